package model

// TraceSpec asks where a packet goes (POST /v1/trace).
type TraceSpec struct {
	// Src is a sandbox's name, or "host" for the host itself. Empty with
	// FromLAN.
	Src string `json:"src,omitempty"`
	// FromLAN traces a packet arriving from this outside address instead.
	FromLAN string `json:"from_lan,omitempty"`
	// Via is the host interface the FromLAN packet arrives on (empty: the
	// one the host routes FromLAN through): an overlay's VXLAN device
	// traces the packet inside a VXLAN frame, whatever its source.
	Via string `json:"via,omitempty"`
	// SrcIP forges the source address of a probe from sandbox Src (what a
	// spoofing sandbox would send); empty: the endpoint's own.
	SrcIP string `json:"src_ip,omitempty"`
	// Dst is DEST[:PORT][/PROTO]: DEST a sandbox's name, "host" (the
	// host's address towards the source), or an address (an IPv6 one in
	// brackets when a port follows: [fd00:1::5]:80); PROTO tcp (the
	// default with a port), udp, sctp or icmp (the default without).
	Dst string `json:"dst"`
	// IPv6 traces an IPv6 packet between sandboxes and the host named by
	// name (the family of an address given anywhere in the spec decides
	// by itself). Only the prediction follows IPv6: a live trace is IPv4.
	IPv6 bool `json:"ipv6,omitempty"`
	// Live sends a real probe (from Src) and reads the kernel's trace of
	// it; with FromLAN it arms the trace and waits Wait for the packet to
	// arrive from outside. Without Live, the answer is the prediction and
	// the kernel's lookups (routes, neighbours, bridge ports, FDB).
	Live bool `json:"live,omitempty"`
	// Wait bounds how long a live trace waits for the probe's fate (or,
	// with FromLAN, for the packet to arrive), as a Go duration ("2s").
	// Default 1s from a sandbox, 10s from the LAN; at most 60s.
	Wait string `json:"wait,omitempty"`
}

// Trace is where a packet goes: the hops in order, then the verdict.
type Trace struct {
	Probe   TraceProbe   `json:"probe"`
	Hops    []TraceHop   `json:"hops"`
	Verdict TraceVerdict `json:"verdict"`
	// Live is the kernel's trace of a real probe (nil without Live).
	Live *TraceLive `json:"live,omitempty"`
}

// TraceProbe is the packet traced, as resolved.
type TraceProbe struct {
	From    string `json:"from"` // "sandbox a", "host", "LAN 203.0.113.2"
	To      string `json:"to"`   // "sandbox b", "host", "198.51.100.2"
	Src     string `json:"src"`  // source address
	Dst     string `json:"dst"`  // destination address
	Proto   string `json:"proto"`
	SrcPort uint16 `json:"src_port,omitempty"`
	DstPort uint16 `json:"dst_port,omitempty"`
}

// Hop kinds, in the seeds' vocabulary.
const (
	HopRoute   = "route"   // a routing decision (in a sandbox, or the host's)
	HopNeigh   = "neigh"   // an ARP / neighbour entry
	HopLink    = "link"    // an interface: eth0, the host end of the veth, the uplink
	HopBridge  = "bridge"  // a bridge port, port isolation
	HopFDB     = "fdb"     // the bridge's forwarding database lookup
	HopNft     = "nft"     // a netfilter base chain the packet crossed
	HopDeliver = "deliver" // the packet reaches its destination (or leaves the host)
)

// TraceHop is one step of the path.
type TraceHop struct {
	Kind string `json:"kind"`
	// Where is the namespace: "sandbox a", "host", "outside".
	Where string `json:"where"`
	// Text says the hop in one line, as ip, bridge and nft would.
	Text string `json:"text"`
	// Kernel is what the kernel's own lookup said (netlink), when it was
	// asked; Differs says it is not what pontoon's state predicts.
	Kernel  string `json:"kernel,omitempty"`
	Differs bool   `json:"differs,omitempty"`

	// For Kind nft: the chain, the rule that decided (empty: the
	// policy), its verdict and any NAT rewrite.
	Family   string `json:"family,omitempty"`
	Table    string `json:"table,omitempty"`
	Chain    string `json:"chain,omitempty"`
	Hook     string `json:"hook,omitempty"`
	Priority int    `json:"priority,omitempty"`
	Rule     string `json:"rule,omitempty"` // pontoon's name for it
	RuleText string `json:"rule_text,omitempty"`
	Comment  string `json:"comment,omitempty"`
	Verdict  string `json:"verdict,omitempty"`
	NAT      string `json:"nat,omitempty"`
	// Foreign marks a table that is not pontoon's (live traces only).
	Foreign bool `json:"foreign,omitempty"`
	// Seen is set in a live trace: "yes" when the kernel's trace showed
	// this chain do this, "no" when the probe never reached it, "differs"
	// when it did something else (Live.Differences says what).
	Seen string `json:"seen,omitempty"`
}

// Verdict results.
const (
	VerdictDelivered   = "delivered"   // reached the destination (a sandbox, the host)
	VerdictLeft        = "left"        // left the host towards the outside
	VerdictDropped     = "dropped"     // a rule, a policy or the bridge dropped it
	VerdictUnreachable = "unreachable" // no route, or no one answers ARP for the next hop
)

// TraceVerdict is the packet's fate.
type TraceVerdict struct {
	Result string `json:"result"`
	// Where: "inet pontoon forward", "bridge pontoon0", "sandbox a".
	Where string `json:"where,omitempty"`
	// Rule is the deciding rule's name (pontoon's), or "policy".
	Rule string `json:"rule,omitempty"`
	// Sentence says where, why and what would change it.
	Sentence string `json:"sentence"`
}

// TraceLive is what a real probe did.
type TraceLive struct {
	// Probe says what was sent: "TCP SYN 10.88.0.2:40312 → 10.88.0.3:80".
	Probe string `json:"probe"`
	// Answer: "reply", "refused" (RST or ICMP port unreachable), "none",
	// or "not sent" (with Error).
	Answer string `json:"answer"`
	// Events are the kernel's trace lines for the probe, in order, as
	// `nft monitor trace` prints them (without the packet dump).
	Events []string `json:"events"`
	// Tables lists every table that saw the probe ("inet pontoon",
	// "ip filter", …), pontoon's and others.
	Tables []string `json:"tables"`
	// Agrees is true when the kernel did what the prediction says;
	// Differences lists what it did otherwise (a foreign table's drop, a
	// rule that drifted).
	Agrees      bool     `json:"agrees"`
	Differences []string `json:"differences,omitempty"`
	// Verdict is the live verdict when it differs from the prediction's.
	Verdict *TraceVerdict `json:"verdict,omitempty"`
	Error   string        `json:"error,omitempty"`
	TookMS  float64       `json:"took_ms"`
}
