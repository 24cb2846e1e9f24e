// The JSON of the daemon's API, as the page reads it (Go: model.Topology,
// model.Event, web.View, web.TraceAnswer and web.Config; docs/api.md).

export interface Topology {
  host: string;
  networks: TopoNetwork[] | null;
  sandboxes: TopoSandbox[] | null;
  drift?: string[];
  repairs?: Record<string, number>;
  uplinks?: TopoUplink[];
}

export interface TopoUplink {
  name: string;
  ifindex: number;
  mtu: number;
}

// One address family's part of a network (model.Subnet).
export interface TopoSubnet {
  subnet: string;
  gateway: string;
  ip_range?: string;
  masquerade: boolean;
}

export interface TopoNetwork {
  name: string;
  driver: string;
  subnets: TopoSubnet[] | null;
  internal: boolean;
  bridge: string;
  bridge_ifindex: number;
  ports: TopoPort[] | null;
  drift?: string[];
}

export interface TopoPort {
  sandbox: string;
  host_if: string;
  host_ifindex: number;
  ifname: string;
  ips: string[] | null;
  mac: string;
  names: string[] | null;
  published?: string[];
  drift?: string[];
  /** Counters as the sandbox sees them (none without a host end); the page does not show them yet. */
  stats?: EndpointStats;
}

export interface EndpointStats {
  rx_bytes: number;
  rx_packets: number;
  rx_dropped: number;
  rx_errors: number;
  tx_bytes: number;
  tx_packets: number;
  tx_dropped: number;
  tx_errors: number;
}

export interface TopoSandbox {
  name: string;
  kind: string;
  netns: string;
  networks: string[] | null;
  drift?: string[];
}

export interface PontoonEvent {
  id: number;
  time: string;
  kind: string;
  network?: string;
  sandbox?: string;
  op?: string;
  detail?: string;
  seconds?: number;
  lost?: number;
}

/** The picture of a topology in parts (Go: topoview.Picture). */
export interface Picture {
  width: number;
  height: number;
  /** The root element and the background: the parts follow it. */
  head: string;
  parts: Part[];
}

/** One object of the picture: one <g class=kind data-name=name> element. */
export interface Part {
  kind: "host" | "hostlink" | "network" | "port" | "sandbox";
  name: string;
  svg: string;
}

export interface View {
  topology: Topology;
  picture: Picture;
}

/** A trace's path on the picture (Go: topoview.Path). */
export interface TracePath {
  steps: PathStep[];
  result: string;
  stop?: PathStep;
}

export interface PathStep {
  kind: Part["kind"];
  name: string;
  /** The first hop that reached it; -1: the probe's source. */
  hop: number;
}

/** POST /api/trace: a model.Trace and its path. */
export interface TraceAnswer {
  hops?: { kind?: string; where?: string; text?: string; differs?: boolean }[];
  verdict?: { result?: string; where?: string; sentence?: string };
  path?: TracePath;
}

export interface Config {
  version: string;
  trace: boolean;
}

export interface ErrorBody {
  error: string;
  kind: string;
}
