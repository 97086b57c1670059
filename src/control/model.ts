// The control plane's view of the mesh: the proxies it serves and the service instances (endpoints) behind
// each service. Services themselves are the api layer's MeshService (Kubernetes Service, ServiceEntry).

/** A connected proxy: who it is and what runs behind it, as it announces itself. */
export interface ProxyNode {
  readonly id: string;
  readonly namespace: string;
  /** Labels of the workload behind the proxy (for sourceLabels, Sidecar selectors, subsets of itself). */
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount?: string;
  readonly cluster?: string;
  readonly network?: string;
  /** The workload's address (pod IP); the sidecar's listeners bind to it. Default 127.0.0.1. */
  readonly appAddress?: string;
  /** region/zone[/subzone]: where the proxy runs, for locality load balancing. */
  readonly locality?: string;
}

/** One endpoint of a service port. */
export interface ServiceInstance {
  /** The service's host (FQDN). */
  readonly host: string;
  /** The service port this instance serves. */
  readonly servicePort: number;
  readonly address: string;
  /** The port the workload listens on (targetPort). */
  readonly port: number;
  readonly labels: Readonly<Record<string, string>>;
  /** region/zone/subzone. */
  readonly locality?: string;
  readonly serviceAccount?: string;
  readonly network?: string;
  readonly cluster?: string;
  readonly weight?: number;
  /** false: known but not ready (its proxy is gone, or it fails readiness); sent to no proxy. Default true. */
  readonly healthy?: boolean;
}

/**
 * A workload instance (a pod, a VM) as a source announces it: the registry makes it an instance of every
 * service in its namespace whose selector its labels match (a Kubernetes Service's, a ServiceEntry's
 * workloadSelector), as Istio does with pods and WorkloadEntries.
 */
export interface WorkloadInstance {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount?: string;
  /** region/zone/subzone. */
  readonly locality?: string;
  readonly network?: string;
  readonly cluster?: string;
  readonly weight?: number;
  /** Port name -> the port the workload listens on, over the services' targetPorts (as WorkloadEntry's ports). */
  readonly ports?: Readonly<Record<string, number>>;
  /** A WorkloadGroup in the same namespace whose template fills what this instance leaves out (VMs). */
  readonly group?: string;
  /** false: not ready; kept, but sent to no proxy. Default true. */
  readonly healthy?: boolean;
}
