// The JSON of the daemon's API, as the page reads it (Go: model.Topology,
// model.Event, web.View and web.Config; docs/api.md).

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

export interface View {
  topology: Topology;
  svg: string;
}

export interface Config {
  version: string;
  trace: boolean;
}

export interface ErrorBody {
  error: string;
  kind: string;
}
