// Shared by the security tests: a proxy whose one listener serves a plain-text chain and an mTLS chain (client
// certificates with SPIFFE URI SANs from a test CA) carrying translated security filters in front of a direct
// 200 "ok"; a client that can pick its source address, certificate and SNI; JWTs signed with a test key.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import type {
  DownstreamTlsConfig,
  HttpConnectionManagerConfig,
  ProxyConfig,
} from "../../../proxy/config/types.ts";
import { testPki } from "../../../proxy/test-pki.ts";
import { onClose } from "../../../proxy/test-support.ts";
import { assertValid, runProxy } from "../translate-test-support.ts";

export const TRUST_DOMAIN = "cluster.local";

export interface Identities {
  readonly serverTls: DownstreamTlsConfig;
  /** Client certificates by "ns/sa". */
  client(nsSa: string): { cert: string; key: string };
}

let pki: Identities | undefined;

/** One CA per test run; client certificates made on demand. */
export function identities(): Identities {
  if (pki) return pki;
  const p = testPki();
  onClose(() => p.remove());
  const ca = p.ca("mesh-ca");
  const server = p.leaf(
    ca,
    "httpbin",
    "DNS:httpbin.foo.svc.cluster.local,URI:spiffe://cluster.local/ns/foo/sa/httpbin",
  );
  const clients = new Map<string, { cert: string; key: string }>();
  pki = {
    serverTls: {
      certificateChain: server.cert,
      privateKey: server.key,
      validationContext: ca.cert,
      requireClientCertificate: true,
      alpnProtocols: ["http/1.1"],
    },
    client(nsSa) {
      let c = clients.get(nsSa);
      if (!c) {
        const [ns, sa] = nsSa.split("/");
        c = p.leaf(ca, sa!, `URI:spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/${sa}`);
        clients.set(nsSa, c);
      }
      return c;
    },
  };
  return pki;
}

export type Security = Pick<HttpConnectionManagerConfig, "jwtAuthn" | "extAuthz" | "rbac">;

/**
 * A proxy answering 200 "ok" behind the given filters (or, with `backend`, forwarding to that port of
 * 127.0.0.1); returns its port.
 */
export async function securedProxy(
  sec: Security,
  o: { backend?: number; clusters?: NonNullable<ProxyConfig["clusters"]> } = {},
): Promise<number> {
  const clusters = [...(o.clusters ?? [])];
  if (o.backend !== undefined)
    clusters.push({ name: "backend", endpoints: [{ address: "127.0.0.1", port: o.backend }] });
  const http: HttpConnectionManagerConfig = {
    type: "http",
    statPrefix: "inbound_8080",
    routeConfig: {
      name: "r",
      virtualHosts: [
        {
          name: "all",
          domains: ["*"],
          routes: [
            o.backend !== undefined
              ? { match: { prefix: "/" }, route: { cluster: "backend", retryPolicy: { numRetries: 0 } } }
              : { match: { prefix: "/" }, directResponse: { status: 200, body: "ok" } },
          ],
        },
      ],
    },
    ...sec,
  };
  const cfg: ProxyConfig = {
    listeners: [
      {
        name: "inbound",
        port: 8080,
        filterChains: [
          { name: "plain", filter: http },
          { name: "mtls", tls: identities().serverTls, filter: http },
        ],
      },
    ],
    clusters,
  };
  assertValid(cfg);
  return (await runProxy(cfg)).inbound!;
}

export interface Call {
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly headers?: Record<string, string>;
  /** Source address (127.0.0.0/8). */
  readonly from?: string;
  /** mTLS as "ns/sa". */
  readonly peer?: string;
  readonly sni?: string;
}

export interface Answer {
  readonly status: number;
  readonly head: string;
  readonly body: string;
}

/** One HTTP/1.1 request on its own connection (closed by the client's `connection: close`). */
export async function call(port: number, c: Call = {}): Promise<Answer> {
  const opts = { host: "127.0.0.1", port, ...(c.from ? { localAddress: c.from } : {}) };
  let socket: net.Socket;
  if (c.peer !== undefined) {
    const id = identities().client(c.peer);
    socket = tls.connect({
      ...opts,
      cert: id.cert,
      key: id.key,
      rejectUnauthorized: false,
      servername: c.sni ?? "httpbin.foo.svc.cluster.local",
      ALPNProtocols: ["http/1.1"],
    });
  } else socket = net.connect(opts);
  const headers = Object.entries(c.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.write(
    `${c.method ?? "GET"} ${c.path ?? "/"} HTTP/1.1\r\nhost: ${c.host ?? "httpbin.foo"}\r\n${headers}connection: close\r\n\r\n`,
  );
  const chunks: Buffer[] = [];
  // A proxy that never answers fails the case instead of hanging the run.
  socket.setTimeout(5000, () => socket.destroy());
  await new Promise<void>((resolve) => {
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
  });
  const text = Buffer.concat(chunks).toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return {
    status: m ? Number(m[1]) : 0,
    head: end === -1 ? text : text.slice(0, end),
    body: end === -1 ? "" : text.slice(end + 4),
  };
}

export const ISSUER = "testing@secure.istio.io";

export interface TestKeys {
  readonly jwks: string;
  sign(
    claims: Record<string, unknown>,
    opts?: { expiresIn?: string | number; kid?: string },
  ): Promise<string>;
  /** Signed with another key (same kid): must fail verification. */
  signWrong(claims: Record<string, unknown>): Promise<string>;
}

type SigningKey = Parameters<SignJWT["sign"]>[0];

export async function testKeys(kid = "k1"): Promise<TestKeys> {
  const { publicKey, privateKey } = await generateKeyPair("RS256");
  const other = await generateKeyPair("RS256");
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
  const sign = (
    key: SigningKey,
    claims: Record<string, unknown>,
    o: { expiresIn?: string | number; kid?: string } = {},
  ) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "RS256", kid: o.kid ?? kid })
      .setIssuer(typeof claims.iss === "string" ? claims.iss : ISSUER)
      .setIssuedAt()
      .setExpirationTime(o.expiresIn ?? "1h")
      .sign(key);
  return {
    jwks: JSON.stringify({ keys: [jwk] }),
    sign: (c, o) => sign(privateKey, c, o),
    signWrong: (c) => sign(other.privateKey, c),
  };
}

export function assertStatus(a: Answer, want: number, what: string): void {
  assert.equal(a.status, want, `${what}: got ${a.status} ${a.body.slice(0, 80)}`);
}
