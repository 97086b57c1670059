// The JSON Schema of ProxyConfig: the contract for bootstrap files and for what the control plane streams.
// Published as docs/proxy-config.schema.json (npm run gen:proxy-schema; a test keeps it in step). Unknown
// fields are errors everywhere (additionalProperties: false), as in Caddy and Envoy's strict validation.

type Schema = Record<string, unknown>;

const str = { type: "string" } as const;
const nonEmpty = { type: "string", minLength: 1 } as const;
const bool = { type: "boolean" } as const;
const port = { type: "integer", minimum: 0, maximum: 65535 } as const;
const positiveInt = { type: "integer", minimum: 1 } as const;
const nonNegInt = { type: "integer", minimum: 0 } as const;
const strMap = { type: "object", additionalProperties: { type: "string" } } as const;

const obj = (properties: Schema, required: string[] = [], extra: Schema = {}): Schema => ({
  type: "object",
  additionalProperties: false,
  properties,
  ...(required.length > 0 ? { required } : {}),
  ...extra,
});
const arr = (items: Schema, extra: Schema = {}): Schema => ({ type: "array", items, ...extra });

const percentage = { type: "number", minimum: 0, maximum: 100 } as const;
const stringMatch = {
  oneOf: [
    obj({ exact: str }, ["exact"]),
    obj({ prefix: str }, ["prefix"]),
    obj({ regex: nonEmpty }, ["regex"]),
  ],
};
const localRateLimit = obj(
  { maxTokens: positiveInt, tokensPerFill: positiveInt, fillIntervalMs: positiveInt },
  ["maxTokens", "fillIntervalMs"],
);
const RETRY_ON = [
  "5xx",
  "gateway-error",
  "reset",
  "connect-failure",
  "refused-stream",
  "retriable-4xx",
  "retriable-status-codes",
  "cancelled",
  "deadline-exceeded",
  "resource-exhausted",
  "unavailable",
];

const headerValueOption = obj({ name: nonEmpty, value: str, append: bool }, ["name", "value"]);
const headerOps = {
  requestHeadersToAdd: arr(headerValueOption),
  requestHeadersToRemove: arr(nonEmpty),
  responseHeadersToAdd: arr(headerValueOption),
  responseHeadersToRemove: arr(nonEmpty),
};

const routeConfiguration = obj(
  {
    name: nonEmpty,
    responseHeadersToAdd: arr(headerValueOption),
    virtualHosts: arr(
      obj(
        {
          name: nonEmpty,
          domains: arr(nonEmpty, { minItems: 1 }),
          routes: arr(
            obj(
              {
                name: str,
                match: obj(
                  {
                    prefix: str,
                    path: str,
                    regex: str,
                    caseSensitive: bool,
                    headers: arr(
                      obj(
                        {
                          name: nonEmpty,
                          exact: str,
                          prefix: str,
                          suffix: str,
                          regex: str,
                          present: bool,
                          invert: bool,
                        },
                        ["name"],
                      ),
                    ),
                    queryParameters: arr(
                      obj({ name: nonEmpty, exact: str, prefix: str, regex: str, present: bool }, ["name"]),
                    ),
                  },
                  [],
                ),
                route: obj({
                  cluster: nonEmpty,
                  weightedClusters: arr(
                    obj({ name: nonEmpty, weight: nonNegInt, ...headerOps }, ["name", "weight"]),
                    {
                      minItems: 1,
                    },
                  ),
                  prefixRewrite: str,
                  regexRewrite: obj({ pattern: nonEmpty, substitution: str }, ["pattern", "substitution"]),
                  hostRewrite: nonEmpty,
                  hashPolicy: arr({
                    oneOf: [
                      obj({ header: nonEmpty }, ["header"]),
                      obj({ cookie: nonEmpty, ttlMs: nonNegInt, path: str }, ["cookie"]),
                      obj({ sourceIp: { const: true } }, ["sourceIp"]),
                      obj({ queryParameter: nonEmpty }, ["queryParameter"]),
                    ],
                  }),
                  timeoutMs: nonNegInt,
                  retryPolicy: obj(
                    {
                      numRetries: { type: "integer", minimum: 0, maximum: 100 },
                      perTryTimeoutMs: nonNegInt,
                      retryOn: arr({ enum: RETRY_ON }),
                      retriableStatusCodes: arr({ type: "integer", minimum: 100, maximum: 599 }),
                      backoff: obj({ baseIntervalMs: positiveInt, maxIntervalMs: positiveInt }),
                    },
                    ["numRetries"],
                  ),
                  fault: obj({
                    delay: obj({ fixedDelayMs: nonNegInt, percentage }, ["fixedDelayMs"]),
                    abort: obj({
                      httpStatus: { type: "integer", minimum: 200, maximum: 599 },
                      grpcStatus: { type: "integer", minimum: 0, maximum: 16 },
                      percentage,
                    }),
                  }),
                  requestMirrorPolicies: arr(obj({ cluster: nonEmpty, percentage }, ["cluster"])),
                  cors: obj(
                    {
                      allowOrigins: arr(stringMatch),
                      allowMethods: arr(nonEmpty),
                      allowHeaders: arr(nonEmpty),
                      exposeHeaders: arr(nonEmpty),
                      maxAgeSeconds: nonNegInt,
                      allowCredentials: bool,
                    },
                    ["allowOrigins"],
                  ),
                  localRateLimit,
                }),
                redirect: obj({
                  scheme: { enum: ["http", "https"] },
                  host: nonEmpty,
                  port,
                  path: str,
                  prefixRewrite: str,
                  responseCode: { enum: [301, 302, 303, 307, 308] },
                }),
                directResponse: obj({ status: { type: "integer", minimum: 200, maximum: 599 }, body: str }, [
                  "status",
                ]),
                ...headerOps,
              },
              ["match"],
            ),
          ),
        },
        ["name", "domains", "routes"],
      ),
    ),
  },
  ["name", "virtualHosts"],
);

// Security filters. Permissions and principals nest (and/or/not), hence $defs and $ref; each is exactly one
// field, as Envoy's oneof.
const rbacString = obj(
  { exact: str, prefix: str, suffix: str, contains: str, regex: nonEmpty, ignoreCase: bool },
  [],
  { minProperties: 1 },
);
const rbacHeader = obj(
  {
    name: nonEmpty,
    exact: str,
    prefix: str,
    suffix: str,
    contains: str,
    regex: nonEmpty,
    ignoreCase: bool,
    present: bool,
    invert: bool,
  },
  ["name"],
);
const one = { minProperties: 1, maxProperties: 1 };
const permissionRef = { $ref: "#/$defs/rbacPermission" };
const principalRef = { $ref: "#/$defs/rbacPrincipal" };
const RBAC_DEFS = {
  rbacPermission: obj(
    {
      any: { const: true },
      andRules: arr(permissionRef),
      orRules: arr(permissionRef),
      notRule: permissionRef,
      header: rbacHeader,
      urlPath: rbacString,
      uriTemplate: { type: "string", pattern: "^/" },
      destinationIp: nonEmpty,
      destinationPort: port,
      requestedServerName: rbacString,
    },
    [],
    one,
  ),
  rbacPrincipal: obj(
    {
      any: { const: true },
      andIds: arr(principalRef),
      orIds: arr(principalRef),
      notId: principalRef,
      authenticated: obj({ principalName: rbacString }),
      directRemoteIp: nonEmpty,
      remoteIp: nonEmpty,
      header: rbacHeader,
      requestPrincipal: rbacString,
      jwtClaim: obj({ path: arr(nonEmpty, { minItems: 1 }), value: rbacString }, ["path", "value"]),
    },
    [],
    one,
  ),
};
const rbacPolicies = {
  type: "object",
  additionalProperties: obj({ permissions: arr(permissionRef), principals: arr(principalRef) }, [
    "permissions",
    "principals",
  ]),
};
const rbacRules = obj({ action: { enum: ["ALLOW", "DENY", "LOG"] }, policies: rbacPolicies }, [
  "action",
  "policies",
]);
const rbac = arr(
  obj({ rules: rbacRules, shadowRules: rbacRules, shadowRulesStatPrefix: str, rulesStatPrefix: str }),
);
const extAuthz = arr(
  obj(
    {
      cluster: nonEmpty,
      pathPrefix: str,
      authority: nonEmpty,
      timeoutMs: positiveInt,
      failureModeAllow: bool,
      statusOnError: { type: "integer", minimum: 200, maximum: 599 },
      includeRequestHeaders: arr(nonEmpty),
      headersToUpstreamOnAllow: arr(nonEmpty),
      headersToDownstreamOnDeny: arr(nonEmpty),
      policies: rbacPolicies,
    },
    ["cluster"],
  ),
);
const jwtAuthn = obj(
  {
    providers: arr(
      obj(
        {
          name: nonEmpty,
          issuer: nonEmpty,
          audiences: arr(nonEmpty),
          localJwks: nonEmpty,
          remoteJwks: obj(
            {
              uri: { type: "string", pattern: "^https?://" },
              cluster: nonEmpty,
              timeoutMs: positiveInt,
              cacheDurationMs: positiveInt,
            },
            ["uri"],
          ),
          fromHeaders: arr(obj({ name: nonEmpty, valuePrefix: str }, ["name"])),
          fromParams: arr(nonEmpty),
          fromCookies: arr(nonEmpty),
          forward: bool,
          forwardPayloadHeader: nonEmpty,
          clockSkewSeconds: nonNegInt,
          maxTokenBytes: { type: "integer", minimum: 64, maximum: 1024 * 1024 },
        },
        ["name"],
      ),
      { minItems: 1 },
    ),
  },
  ["providers"],
);

const listenerLimits = obj({
  maxRequestHeadersBytes: { type: "integer", minimum: 1024, maximum: 1024 * 1024 },
  maxRequestHeaders: { type: "integer", minimum: 1, maximum: 10_000 },
  requestHeadersTimeoutMs: positiveInt,
  idleTimeoutMs: positiveInt,
  maxConnections: positiveInt,
});

const filterChain = obj(
  {
    name: str,
    match: obj({
      destinationPort: port,
      serverNames: arr(nonEmpty),
      applicationProtocols: arr(nonEmpty),
    }),
    tls: obj({
      certificateChain: nonEmpty,
      privateKey: nonEmpty,
      certificateSecret: nonEmpty,
      validationContext: nonEmpty,
      validationSecret: nonEmpty,
      requireClientCertificate: bool,
      matchSubjectAltNames: arr(nonEmpty),
      alpnProtocols: arr(nonEmpty),
    }),
    filter: {
      oneOf: [
        obj(
          {
            type: { const: "http" },
            routeConfigName: nonEmpty,
            routeConfig: routeConfiguration,
            mode: { enum: ["server", "http_proxy"] },
            codec: { enum: ["auto", "http1", "http2"] },
            statPrefix: nonEmpty,
            reporter: { enum: ["source", "destination"] },
            setClientCertDetails: bool,
            localRateLimit,
            jwtAuthn,
            extAuthz,
            rbac,
          },
          ["type"],
        ),
        obj(
          {
            type: { const: "tcp" },
            cluster: nonEmpty,
            statPrefix: nonEmpty,
            idleTimeoutMs: positiveInt,
            rbac,
          },
          ["type", "cluster"],
        ),
        obj(
          {
            type: { const: "reverse_tunnel_acceptor" },
            statPrefix: nonEmpty,
            allowedNames: arr(nonEmpty),
          },
          ["type"],
        ),
      ],
    },
  },
  ["filter"],
);

const upstreamTls = obj({
  sni: nonEmpty,
  validationContext: nonEmpty,
  validationSecret: nonEmpty,
  certificateChain: nonEmpty,
  privateKey: nonEmpty,
  certificateSecret: nonEmpty,
  matchSubjectAltNames: arr(nonEmpty),
  alpnProtocols: arr(nonEmpty),
  insecureSkipVerify: bool,
});

const cluster = obj(
  {
    name: nonEmpty,
    type: { enum: ["static", "original_dst"] },
    lbPolicy: { enum: ["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"] },
    ringHash: obj({ minimumRingSize: positiveInt, maximumRingSize: positiveInt }),
    maglev: obj({ tableSize: positiveInt }),
    protocol: { enum: ["http1", "http2"] },
    endpoints: arr(
      obj(
        {
          address: nonEmpty,
          port: { type: "integer", minimum: 1, maximum: 65535 },
          weight: { type: "integer", minimum: 1, maximum: 1_000_000 },
          labels: strMap,
          locality: str,
          priority: { type: "integer", minimum: 0, maximum: 31 },
          tunnel: nonEmpty,
        },
        ["address", "port"],
      ),
    ),
    connectTimeoutMs: positiveInt,
    idleTimeoutMs: positiveInt,
    circuitBreakers: obj({
      maxConnections: nonNegInt,
      maxPendingRequests: nonNegInt,
      maxRequests: nonNegInt,
      maxRequestsPerConnection: nonNegInt,
      retryBudget: obj({ budgetPercent: percentage, minRetryConcurrency: nonNegInt }, ["budgetPercent"]),
    }),
    outlierDetection: obj({
      consecutive5xxErrors: nonNegInt,
      consecutiveGatewayErrors: nonNegInt,
      intervalMs: positiveInt,
      baseEjectionTimeMs: positiveInt,
      maxEjectionPercent: percentage,
      minHealthPercent: percentage,
    }),
    tls: upstreamTls,
    transportSocketMatches: arr(obj({ name: nonEmpty, match: strMap, tls: upstreamTls }, ["name", "match"])),
  },
  ["name", "endpoints"],
);

export const PROXY_CONFIG_SCHEMA: Schema = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  $id: "https://isthmus.io/schemas/proxy-config.json",
  title: "isthmus ProxyConfig",
  description:
    "Configuration of the isthmus proxy: listeners -> filter chains -> HTTP routes -> clusters -> endpoints. See docs/proxy.md.",
  ...obj(
    {
      version: str,
      node: obj({ id: str, cluster: str, metadata: strMap }),
      admin: obj({ address: nonEmpty, port }),
      listeners: arr(
        obj(
          {
            name: nonEmpty,
            address: nonEmpty,
            port,
            filterChains: arr(filterChain, { minItems: 1 }),
            limits: listenerLimits,
          },
          ["name", "port", "filterChains"],
        ),
      ),
      routeConfigs: arr(routeConfiguration),
      clusters: arr(cluster),
      reverseTunnels: arr(
        obj(
          {
            name: nonEmpty,
            address: nonEmpty,
            port: { type: "integer", minimum: 1, maximum: 65535 },
            tls: upstreamTls,
            connections: { type: "integer", minimum: 1, maximum: 16 },
            listener: nonEmpty,
          },
          ["name", "address", "port", "tls", "listener"],
        ),
      ),
      telemetry: obj({
        prometheus: obj({ address: nonEmpty, port }),
        accessLog: obj({ path: nonEmpty }, ["path"]),
        tracing: obj(
          {
            otlpEndpoint: { type: "string", pattern: "^https?://" },
            samplingPercent: percentage,
            serviceName: nonEmpty,
          },
          ["otlpEndpoint"],
        ),
      }),
    },
    ["listeners"],
  ),
  $defs: RBAC_DEFS,
};
