// Peering between control planes (issue 8): the API the control plane uses. docs/peering.md.
export {
  makePeeringCredentials,
  type PeeringCredentials,
  PeeringCredentialsError,
  renewalDelayMs,
} from "./credentials.ts";
export type { GatewayProbe } from "./grace-period.ts";
export {
  CONTROL_PLANE_GRANT,
  controlPlaneSpiffeId,
  type MeshLink,
  type PeerIdentity,
  PeeringConfigError,
} from "./identity.ts";
export { PEERING_LIMITS } from "./limits.ts";
export {
  checkPeerExport,
  type PeerAddress,
  type PeerExport,
  type ServiceInstanceLike,
} from "./peer-export.ts";
export {
  type LinkState,
  type LinkStatus,
  PeerLinks,
  type PeerLinksOptions,
  type PeerRefusal,
} from "./peer-links.ts";
export {
  formatRemoteClusters,
  type RemoteClusterJson,
  type RemoteClustersJson,
  remoteClustersJson,
} from "./status-json.ts";
