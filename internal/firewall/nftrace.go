package firewall

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Live tracing: nftables' own packet tracer, for one packet.
//
// StartTrace creates two short-lived tables, `bridge pontoon-trace-<id>` and
// `inet pontoon-trace-<id>`, each with base chains at priority -1000
// (before every usual chain: raw is -300) whose one rule sets `meta nftrace
// 1` on packets of exactly the probe's addresses, protocol and ports. From
// then on every base chain of every table that sees such a packet reports
// it to the NFNLGRP_NFTRACE netlink group — pontoon's tables and anyone
// else's — which the session reads (NFT_MSG_TRACE, parsed here: google/
// nftables' monitor does not decode trace messages).
//
// The bridge chain sees frames from sandboxes first (bridge prerouting,
// before table bridge pontoon's anti-spoofing at -200); the nftrace bit
// stays on the packet through the IP hooks br_netfilter runs. A veth
// clears it (skb_scrub_packet), which is why the tables live in the host's
// namespace, not the sandbox's. The inet chains catch packets arriving on
// other interfaces (prerouting) and the host's own (output).
//
// Stop deletes both tables in one transaction; callers defer it, so an
// interrupted trace (the client's request cancelled) removes them too. A
// daemon that dies mid-trace leaves them behind: SweepTraces, at start-up,
// deletes every table with the prefix. Nothing else is changed: no mark,
// no sysctl, no rule in another table.

// TraceTablePrefix starts the name of every trace table.
const TraceTablePrefix = "pontoon-trace-"

// tracePriority is the trace chains' priority: before everything usual.
const tracePriority = -1000

// Tracer is implemented by the real firewall (a Fake cannot trace).
type Tracer interface {
	// CanTrace is false for a firewall without a kernel (the fake).
	CanTrace() bool
	// StartTrace arms tracing for packets matching m and starts reading
	// trace events. It acts in the calling thread's network namespace.
	StartTrace(ctx context.Context, m TraceMatch) (*TraceSession, error)
	// SweepTraces deletes trace tables left by a daemon that died
	// mid-trace, and says how many it deleted.
	SweepTraces(ctx context.Context) (int, error)
}

// ErrNoTracing says the firewall cannot trace (the fake).
var ErrNoTracing = errors.New("this firewall cannot trace packets")

// TraceMatch selects the probe: zero fields match anything.
type TraceMatch struct {
	Src, Dst     netip.Addr
	Proto        string // tcp, udp, sctp, icmp
	SPort, DPort uint16
	// ICMPID is the echo request's identifier (Proto icmp).
	ICMPID uint16
}

// TraceEvent is one NFT_MSG_TRACE message.
type TraceEvent struct {
	ID     uint32
	Family Family // inet, ip, ip6, bridge, arp, netdev
	Table  string
	Chain  string
	// Type is rule, policy or return.
	Type    string
	Handle  uint64
	Verdict string // accept, drop, continue, jump CHAIN, goto CHAIN, return, …
	IIF     int
	OIF     int
	// Network and Transport are the packet's headers when the event is
	// the first of a base chain (the kernel dumps them once per chain).
	Network   []byte
	Transport []byte
}

// IPv4 fields of the network header, if the event has one.
func (e TraceEvent) IPv4() (src, dst netip.Addr, proto byte, id uint16, ok bool) {
	h := e.Network
	if len(h) < 20 || h[0]>>4 != 4 {
		return
	}
	src, dst = netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20]))
	return src, dst, h[9], binary.BigEndian.Uint16(h[4:6]), true
}

// Ports are the transport header's first two 16-bit words: the source
// and destination ports of TCP, UDP and SCTP.
func (e TraceEvent) Ports() (a, b uint16, ok bool) {
	if len(e.Transport) < 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(e.Transport[0:2]), binary.BigEndian.Uint16(e.Transport[2:4]), true
}

// TraceSession is one armed trace.
type TraceSession struct {
	name   string
	nsFd   int
	gc     *gnft.Conn
	ev     *netlink.Conn
	events chan TraceEvent
	errc   chan error

	mu       sync.Mutex
	stopped  bool
	chains   map[string]*gnft.Chain // "family table chain"
	comments map[string]string      // "family table chain handle" → comment
}

// Name is the session's table name (in both families).
func (s *TraceSession) Name() string { return s.name }

// Events delivers the trace events of every traced packet; the channel
// closes when the session stops.
func (s *TraceSession) Events() <-chan TraceEvent { return s.events }

// Err reports a failure of the event reader (lost events: ENOBUFS), if
// any, without blocking.
func (s *TraceSession) Err() error {
	select {
	case err := <-s.errc:
		return err
	default:
		return nil
	}
}

var nfprotoFamily = map[uint8]Family{unix.NFPROTO_INET: "inet", unix.NFPROTO_IPV4: "ip", unix.NFPROTO_IPV6: "ip6",
	unix.NFPROTO_ARP: "arp", unix.NFPROTO_NETDEV: "netdev", unix.NFPROTO_BRIDGE: "bridge"}

var familyTable = map[Family]gnft.TableFamily{"inet": gnft.TableFamilyINet, "ip": gnft.TableFamilyIPv4, "ip6": gnft.TableFamilyIPv6,
	"arp": gnft.TableFamilyARP, "netdev": gnft.TableFamilyNetdev, "bridge": gnft.TableFamilyBridge}

func (f *nft) StartTrace(ctx context.Context, m TraceMatch) (*TraceSession, error) {
	return startTrace(ctx, m)
}

func (f *nft) SweepTraces(ctx context.Context) (int, error) { return sweepTraces(ctx) }

func (f *nft) CanTrace() bool { return true }

func (f *Fake) CanTrace() bool { return false }

// StartTrace and SweepTraces of the fake: it has no kernel to trace in.
func (f *Fake) StartTrace(context.Context, TraceMatch) (*TraceSession, error) {
	return nil, ErrNoTracing
}

func (f *Fake) SweepTraces(context.Context) (int, error) { return 0, nil }

func startTrace(_ context.Context, m TraceMatch) (*TraceSession, error) {
	if !m.Dst.Is4() || (m.Src.IsValid() && !m.Src.Is4()) {
		return nil, fmt.Errorf("trace: only IPv4 packets can be traced")
	}
	proto, ok := map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP, "icmp": unix.IPPROTO_ICMP}[m.Proto]
	if !ok {
		return nil, fmt.Errorf("trace: protocol %q", m.Proto)
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("trace: open own network namespace: %w", err)
	}
	s := &TraceSession{nsFd: fd, events: make(chan TraceEvent, 256), errc: make(chan error, 1),
		chains: map[string]*gnft.Chain{}, comments: map[string]string{}}
	var id [4]byte
	_, _ = rand.Read(id[:])
	s.name = TraceTablePrefix + hex.EncodeToString(id[:])
	// Listen first, so that no event of the probe is missed.
	ev, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("trace: open netfilter netlink socket: %w", err)
	}
	if err := ev.JoinGroup(unix.NFNLGRP_NFTRACE); err != nil {
		ev.Close()
		unix.Close(fd)
		return nil, fmt.Errorf("trace: subscribe to nftables trace events: %w", err)
	}
	_ = ev.SetReadBuffer(1 << 20)
	s.ev = ev
	gc, err := gnft.New(gnft.WithNetNSFd(fd), gnft.AsLasting())
	if err != nil {
		ev.Close()
		unix.Close(fd)
		return nil, fmt.Errorf("trace: nftables: %w", err)
	}
	s.gc = gc

	comment := userdata.AppendString(nil, userdata.TypeComment, "pontoon trace: one probe, removed when the trace ends")
	match := traceExprs(m, proto)
	set := []expr.Any{&expr.Immediate{Register: 1, Data: []byte{1}},
		&expr.Meta{Key: expr.MetaKeyNFTRACE, SourceRegister: true, Register: 1}}
	ipv4 := []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}}
	ether := []expr.Any{&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x00}}}
	for _, t := range []struct {
		fam   gnft.TableFamily
		hooks []*gnft.ChainHook
		guard []expr.Any
	}{
		{gnft.TableFamilyBridge, []*gnft.ChainHook{gnft.ChainHookPrerouting}, ether},
		{gnft.TableFamilyINet, []*gnft.ChainHook{gnft.ChainHookPrerouting, gnft.ChainHookOutput}, ipv4},
	} {
		tbl := gc.AddTable(&gnft.Table{Name: s.name, Family: t.fam})
		for _, h := range t.hooks {
			name := "prerouting"
			if *h == *gnft.ChainHookOutput {
				name = "output"
			}
			ch := gc.AddChain(&gnft.Chain{Name: name, Table: tbl, Type: gnft.ChainTypeFilter, Hooknum: h,
				Priority: gnft.ChainPriorityRef(tracePriority)})
			exprs := append(append(append([]expr.Any{}, t.guard...), match...), set...)
			gc.AddRule(&gnft.Rule{Table: tbl, Chain: ch, Exprs: exprs, UserData: comment})
		}
	}
	if err := gc.Flush(); err != nil {
		s.close()
		return nil, fmt.Errorf("trace: create tables %s: %w", s.name, err)
	}
	go s.read()
	return s, nil
}

// traceExprs match the probe's IPv4 header and ports (or ICMP echo id).
func traceExprs(m TraceMatch, proto byte) []expr.Any {
	var out []expr.Any
	eq := func(base expr.PayloadBase, off uint32, data []byte) {
		out = append(out, &expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: uint32(len(data))},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data})
	}
	eq(expr.PayloadBaseNetworkHeader, 9, []byte{proto})
	if m.Src.IsValid() {
		eq(expr.PayloadBaseNetworkHeader, 12, m.Src.AsSlice())
	}
	eq(expr.PayloadBaseNetworkHeader, 16, m.Dst.AsSlice())
	be16 := func(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }
	if proto == unix.IPPROTO_ICMP {
		eq(expr.PayloadBaseTransportHeader, 0, []byte{8}) // echo request
		if m.ICMPID != 0 {
			eq(expr.PayloadBaseTransportHeader, 4, be16(m.ICMPID))
		}
		return out
	}
	if m.SPort != 0 {
		eq(expr.PayloadBaseTransportHeader, 0, be16(m.SPort))
	}
	if m.DPort != 0 {
		eq(expr.PayloadBaseTransportHeader, 2, be16(m.DPort))
	}
	return out
}

// read decodes trace messages until the socket closes.
func (s *TraceSession) read() {
	defer close(s.events)
	for {
		msgs, err := s.ev.Receive()
		if err != nil {
			s.mu.Lock()
			stopped := s.stopped
			s.mu.Unlock()
			if !stopped {
				select {
				case s.errc <- fmt.Errorf("reading trace events: %w", err):
				default:
				}
			}
			if stopped || !errors.Is(err, unix.ENOBUFS) {
				return
			}
			continue // ENOBUFS: events were lost, but the socket goes on
		}
		for _, m := range msgs {
			if uint16(m.Header.Type) != uint16(unix.NFNL_SUBSYS_NFTABLES)<<8|unix.NFT_MSG_TRACE || len(m.Data) < 4 {
				continue
			}
			e, err := parseTrace(m.Data)
			if err != nil {
				continue
			}
			select {
			case s.events <- e:
			default: // nobody reads fast enough: drop rather than block the socket
			}
		}
	}
}

func parseTrace(data []byte) (TraceEvent, error) {
	e := TraceEvent{Family: nfprotoFamily[data[0]]}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return e, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_TRACE_TABLE:
			e.Table = ad.String()
		case unix.NFTA_TRACE_CHAIN:
			e.Chain = ad.String()
		case unix.NFTA_TRACE_RULE_HANDLE:
			e.Handle = ad.Uint64()
		case unix.NFTA_TRACE_TYPE:
			e.Type = map[uint32]string{unix.NFT_TRACETYPE_POLICY: "policy", unix.NFT_TRACETYPE_RETURN: "return", unix.NFT_TRACETYPE_RULE: "rule"}[ad.Uint32()]
		case unix.NFTA_TRACE_VERDICT:
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				var code int32
				var chain string
				for nd.Next() {
					switch nd.Type() {
					case unix.NFTA_VERDICT_CODE:
						code = int32(nd.Uint32())
					case unix.NFTA_VERDICT_CHAIN:
						chain = nd.String()
					}
				}
				e.Verdict = verdictName(code, chain)
				return nil
			})
		case unix.NFTA_TRACE_POLICY:
			e.Verdict = verdictName(int32(ad.Uint32()), "")
		case unix.NFTA_TRACE_ID:
			e.ID = ad.Uint32()
		case unix.NFTA_TRACE_NETWORK_HEADER:
			e.Network = append([]byte(nil), ad.Bytes()...)
		case unix.NFTA_TRACE_TRANSPORT_HEADER:
			e.Transport = append([]byte(nil), ad.Bytes()...)
		case unix.NFTA_TRACE_IIF:
			e.IIF = int(ad.Uint32())
		case unix.NFTA_TRACE_OIF:
			e.OIF = int(ad.Uint32())
		}
	}
	return e, ad.Err()
}

// Verdict codes of netfilter (NF_*, linux/netfilter.h) and nftables
// (NFT_*, linux/netfilter/nf_tables.h); x/sys has only some of them.
const (
	nfDrop, nfAccept, nfStolen, nfQueue, nfRepeat = 0, 1, 2, 3, 4
	nfVerdictMask                                 = 0xff
	nftContinue, nftBreak, nftJump, nftGoto       = -1, -2, -3, -4
	nftReturn                                     = -5
)

func verdictName(code int32, chain string) string {
	switch code {
	case nfDrop:
		return "drop"
	case nfAccept:
		return "accept"
	case nfStolen:
		return "stolen"
	case nfQueue:
		return "queue"
	case nfRepeat:
		return "repeat"
	case nftContinue:
		return "continue"
	case nftBreak:
		return "break"
	case nftJump:
		return "jump " + chain
	case nftGoto:
		return "goto " + chain
	case nftReturn:
		return "return"
	}
	if code >= 0 && code&nfVerdictMask == nfQueue {
		return "queue"
	}
	return fmt.Sprintf("verdict %d", code)
}

// ChainInfo is what the trace needs of a base chain.
type ChainInfo struct {
	Hook     Hook // "" for a regular (jump) chain
	Priority int
	Policy   string
}

var hookNames = map[gnft.ChainHook]Hook{*gnft.ChainHookPrerouting: HookPrerouting, *gnft.ChainHookInput: HookInput,
	*gnft.ChainHookForward: HookForward, *gnft.ChainHookOutput: HookOutput, *gnft.ChainHookPostrouting: HookPostrouting}

// Chain describes a chain the trace went through (listed once per session).
func (s *TraceSession) Chain(fam Family, table, chain string) ChainInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.chains) == 0 {
		if all, err := s.gc.ListChains(); err == nil {
			for _, c := range all {
				s.chains[string(familyName(c.Table.Family))+" "+c.Table.Name+" "+c.Name] = c
			}
		}
	}
	c := s.chains[string(fam)+" "+table+" "+chain]
	var ci ChainInfo
	if c == nil {
		return ci
	}
	if c.Hooknum != nil {
		ci.Hook = hookNames[*c.Hooknum]
		if fam == "netdev" {
			ci.Hook = "ingress"
		}
	}
	if c.Priority != nil {
		ci.Priority = int(*c.Priority)
	}
	if c.Policy != nil {
		ci.Policy = map[gnft.ChainPolicy]string{gnft.ChainPolicyAccept: "accept", gnft.ChainPolicyDrop: "drop"}[*c.Policy]
	}
	return ci
}

func familyName(f gnft.TableFamily) Family {
	for name, tf := range familyTable {
		if tf == f {
			return name
		}
	}
	return Family(fmt.Sprint(f))
}

// RuleComment is a rule's comment: nft's (userdata) or iptables-nft's
// (the xt comment match); "" when it has none.
func (s *TraceSession) RuleComment(fam Family, table, chain string, handle uint64) string {
	key := fmt.Sprintf("%s %s %s", fam, table, chain)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, listed := s.comments[key]; !listed {
		s.comments[key] = ""
		tf, ok := familyTable[fam]
		if ok {
			t := &gnft.Table{Name: table, Family: tf}
			if rules, err := s.gc.GetRules(t, &gnft.Chain{Name: chain, Table: t}); err == nil {
				for _, r := range rules {
					s.comments[fmt.Sprintf("%s %d", key, r.Handle)] = ruleComment(r)
				}
			}
		}
	}
	return s.comments[fmt.Sprintf("%s %d", key, handle)]
}

func ruleComment(r *gnft.Rule) string {
	if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && c != "" {
		return c
	}
	for _, e := range r.Exprs {
		if m, ok := e.(*expr.Match); ok && m.Name == "comment" {
			if c, ok := m.Info.(*xt.Comment); ok {
				return strings.TrimRight(string(*c), "\x00")
			}
		}
	}
	return ""
}

// Stop removes the session's tables and stops reading. It is idempotent
// and does not depend on the caller's context: it must run even when the
// trace was interrupted.
func (s *TraceSession) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	var err error
	for range 3 { // a busy netlink socket may refuse once; the sweep at start-up is the backstop
		s.gc.DelTable(&gnft.Table{Name: s.name, Family: gnft.TableFamilyBridge})
		s.gc.DelTable(&gnft.Table{Name: s.name, Family: gnft.TableFamilyINet})
		if err = s.gc.Flush(); err == nil || errors.Is(err, unix.ENOENT) {
			err = nil
			break
		}
	}
	s.close()
	if err != nil {
		return fmt.Errorf("trace: delete tables %s: %w", s.name, err)
	}
	return nil
}

func (s *TraceSession) close() {
	if s.ev != nil {
		s.ev.Close()
	}
	if s.gc != nil {
		_ = s.gc.CloseLasting()
	}
	unix.Close(s.nsFd)
}

// sweepTraces deletes every trace table in the calling thread's namespace.
func sweepTraces(_ context.Context) (int, error) {
	gc, err := gnft.New()
	if err != nil {
		return 0, err
	}
	tables, err := gc.ListTables()
	if err != nil {
		return 0, fmt.Errorf("list nftables tables: %w", err)
	}
	n := 0
	for _, t := range tables {
		if strings.HasPrefix(t.Name, TraceTablePrefix) {
			gc.DelTable(t)
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := gc.Flush(); err != nil {
		return 0, fmt.Errorf("delete leftover trace tables: %w", err)
	}
	return n, nil
}
