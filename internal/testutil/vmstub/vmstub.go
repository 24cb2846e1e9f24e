// Package vmstub is a VM stand-in for tests: it opens a persistent tap
// (as a hypervisor would) and is a tiny IPv4 host on it. It answers ARP
// requests for its address and ICMP echo requests to it, records what it
// saw, and can ping (resolving the next hop by ARP first).
//
// Ethernet, ARP, IPv4 and ICMP are encoded here by hand: it is test code,
// and a few dozen lines of encoding/binary are less than a packet library
// as a dependency. Everything is bounded: the reader ends when the tap
// is closed or deleted, waits end at their timeout, the record is capped,
// and the reader never blocks on a waiter.
package vmstub

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Kind is the kind of a frame the stub saw.
type Kind string

const (
	ARPRequest  Kind = "arp-request"  // an ARP request for the stub's address
	ARPReply    Kind = "arp-reply"    // an ARP reply to the stub
	EchoRequest Kind = "echo-request" // an ICMP echo request to the stub's address
	EchoReply   Kind = "echo-reply"   // an ICMP echo reply to the stub's address
)

// Seen is one frame the stub saw and what it did with it.
type Seen struct {
	Kind     Kind
	From     netip.Addr       // the sender's IPv4 address
	FromMAC  net.HardwareAddr // the frame's source MAC
	Answered bool             // the stub sent a reply
}

// maxSeen caps the record: a test that floods the stub keeps the first
// frames and a count of the rest (Dropped).
const maxSeen = 4096

// VM is an open stub. Its methods may be called from any goroutine.
type VM struct {
	f    *os.File
	name string
	mac  net.HardwareAddr
	addr netip.Prefix
	gw   netip.Addr
	id   uint16 // ICMP echo identifier of its pings
	done chan struct{}
	once sync.Once

	mu       sync.Mutex
	neigh    map[netip.Addr]net.HardwareAddr
	arpWait  map[netip.Addr]chan struct{}
	echoWait map[uint16]chan struct{} // by sequence number
	seq      uint16
	seen     []Seen
	dropped  int
	readErr  error
}

// Open attaches to the existing tap tapName in the namespace at
// netnsPath ("": the caller's) as a VM with MAC mac and IPv4 address
// addr (with its subnet's length), gw its gateway (zero: none). A tap
// that does not exist is an error: TUNSETIFF would make a new,
// unbridged one. A multi-queue tap is opened as one queue.
func Open(netnsPath, tapName string, mac net.HardwareAddr, addr netip.Prefix, gw netip.Addr) (*VM, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("vmstub %s: MAC %s is not an Ethernet MAC", tapName, mac)
	}
	if !addr.IsValid() || !addr.Addr().Is4() {
		return nil, fmt.Errorf("vmstub %s: address %s is not an IPv4 prefix (the stub speaks IPv4 only)", tapName, addr)
	}
	if gw.IsValid() && !gw.Is4() {
		return nil, fmt.Errorf("vmstub %s: gateway %s is not IPv4", tapName, gw)
	}
	fd, err := openTap(netnsPath, tapName)
	if err != nil {
		return nil, fmt.Errorf("vmstub: %w", err)
	}
	// Non-blocking only after TUNSETIFF: os.NewFile then registers the fd
	// with the runtime's poller, so Close interrupts a blocked Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vmstub %s: %w", tapName, err)
	}
	vm := &VM{
		f: os.NewFile(uintptr(fd), tapName), name: tapName, mac: append(net.HardwareAddr(nil), mac...),
		addr: addr, gw: gw, id: binary.BigEndian.Uint16(mac[4:]), done: make(chan struct{}),
		neigh: map[netip.Addr]net.HardwareAddr{}, arpWait: map[netip.Addr]chan struct{}{}, echoWait: map[uint16]chan struct{}{},
	}
	go vm.read()
	return vm, nil
}

// openTap opens /dev/net/tun on a thread inside the namespace and
// attaches it to the tap. The thread stays locked and is thrown away
// (never returned to the runtime in another namespace).
func openTap(netnsPath, name string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if netnsPath != "" {
			ns, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				c <- result{-1, err}
				return
			}
			err = unix.Setns(ns, unix.CLONE_NEWNET)
			unix.Close(ns)
			if err != nil {
				c <- result{-1, fmt.Errorf("enter %s: %w", netnsPath, err)}
				return
			}
		}
		fd, err := attach(name)
		c <- result{fd, err}
	}()
	r := <-c
	return r.fd, r.err
}

// attach opens the existing tap name in the thread's namespace.
func attach(name string) (int, error) {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	q, err := unix.NewIfreq(name)
	if err == nil {
		err = unix.IoctlIfreq(s, unix.SIOCGIFINDEX, q)
	}
	unix.Close(s)
	if err != nil {
		return -1, fmt.Errorf("tap %s: %w", name, err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// The multi-queue flag must be the tap's (tun_set_iff: EINVAL
	// otherwise), and the stub cannot read it without netlink: try both.
	for _, flags := range []uint16{unix.IFF_TAP | unix.IFF_NO_PI, unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE} {
		ifr, _ := unix.NewIfreq(name)
		ifr.SetUint16(flags)
		if err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err == nil {
			return fd, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	unix.Close(fd)
	return -1, fmt.Errorf("attach to tap %s: %w", name, err)
}

// Close detaches from the tap (the tap stays: it is persistent) and
// waits for the reader to end.
func (vm *VM) Close() error {
	var err error
	vm.once.Do(func() {
		err = vm.f.Close()
		select {
		case <-vm.done:
		case <-time.After(5 * time.Second):
			err = errors.Join(err, fmt.Errorf("vmstub %s: reader did not end within 5 s of Close", vm.name))
		}
	})
	return err
}

// Done is closed when the reader has ended: the stub was closed, or the
// tap was deleted (Err says why).
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Err is why the reader ended (nil while it runs, and after Close).
func (vm *VM) Err() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.readErr
}

// Seen returns a copy of what the stub saw so far, in order, and how many
// frames it saw beyond the record's cap.
func (vm *VM) Seen() (seen []Seen, dropped int) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Seen(nil), vm.seen...), vm.dropped
}

func (vm *VM) read() {
	defer close(vm.done)
	buf := make([]byte, 65536)
	for {
		n, err := vm.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				vm.mu.Lock()
				vm.readErr = err
				vm.mu.Unlock()
			}
			return
		}
		vm.handle(buf[:n])
	}
}

func (vm *VM) record(s Seen) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if len(vm.seen) >= maxSeen {
		vm.dropped++
		return
	}
	vm.seen = append(vm.seen, s)
}

const (
	etherARP  = 0x0806
	etherIPv4 = 0x0800
	ethHdrLen = 14
	arpLen    = 28
)

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func (vm *VM) handle(fr []byte) {
	if len(fr) < ethHdrLen {
		return
	}
	dst := net.HardwareAddr(fr[0:6])
	if dst.String() != vm.mac.String() && dst.String() != broadcast.String() {
		return // flooded unicast for someone else
	}
	src := net.HardwareAddr(append([]byte(nil), fr[6:12]...))
	payload := fr[ethHdrLen:]
	switch binary.BigEndian.Uint16(fr[12:14]) {
	case etherARP:
		vm.handleARP(src, payload)
	case etherIPv4:
		vm.handleIPv4(src, payload)
	}
}

func (vm *VM) handleARP(src net.HardwareAddr, p []byte) {
	if len(p) < arpLen || binary.BigEndian.Uint16(p[0:2]) != 1 || binary.BigEndian.Uint16(p[2:4]) != etherIPv4 || p[4] != 6 || p[5] != 4 {
		return
	}
	op := binary.BigEndian.Uint16(p[6:8])
	sha := net.HardwareAddr(append([]byte(nil), p[8:14]...))
	spa := netip.AddrFrom4([4]byte(p[14:18]))
	tpa := netip.AddrFrom4([4]byte(p[24:28]))
	me := vm.addr.Addr()
	if !spa.IsUnspecified() && vm.addr.Contains(spa) {
		vm.learn(spa, sha)
	}
	switch {
	case op == 1 && tpa == me:
		err := vm.send(arpFrame(2, vm.mac, me, sha, spa))
		vm.record(Seen{Kind: ARPRequest, From: spa, FromMAC: src, Answered: err == nil})
	case op == 2 && tpa == me:
		vm.record(Seen{Kind: ARPReply, From: spa, FromMAC: src})
	}
}

// learn caches a neighbour and wakes whoever waits for it.
func (vm *VM) learn(ip netip.Addr, mac net.HardwareAddr) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.neigh[ip] = mac
	if c, ok := vm.arpWait[ip]; ok {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (vm *VM) handleIPv4(src net.HardwareAddr, p []byte) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || total < ihl || total > len(p) {
		return
	}
	from := netip.AddrFrom4([4]byte(p[12:16]))
	to := netip.AddrFrom4([4]byte(p[16:20]))
	if to != vm.addr.Addr() || p[9] != unix.IPPROTO_ICMP {
		return
	}
	icmp := p[ihl:total]
	if len(icmp) < 8 || checksum(icmp) != 0 {
		return
	}
	switch icmp[0] {
	case 8: // echo request
		reply := append([]byte(nil), icmp...)
		reply[0] = 0
		binary.BigEndian.PutUint16(reply[2:4], 0)
		binary.BigEndian.PutUint16(reply[2:4], checksum(reply))
		err := vm.send(ipv4Frame(vm.mac, src, vm.addr.Addr(), from, reply))
		vm.record(Seen{Kind: EchoRequest, From: from, FromMAC: src, Answered: err == nil})
	case 0: // echo reply
		vm.record(Seen{Kind: EchoReply, From: from, FromMAC: src})
		if binary.BigEndian.Uint16(icmp[4:6]) != vm.id {
			return
		}
		seq := binary.BigEndian.Uint16(icmp[6:8])
		vm.mu.Lock()
		if c, ok := vm.echoWait[seq]; ok {
			select {
			case c <- struct{}{}:
			default:
			}
		}
		vm.mu.Unlock()
	}
}

func (vm *VM) send(frame []byte) error {
	_, err := vm.f.Write(frame)
	return err
}

// Ping sends one ICMP echo request to dst and waits for its reply, at
// most timeout in all. dst's MAC — or, outside the stub's subnet, the
// gateway's — is resolved by ARP first (a request every 200 ms until
// answered or out of time).
func (vm *VM) Ping(dst netip.Addr, timeout time.Duration) error {
	if !dst.Is4() {
		return fmt.Errorf("ping %s: the stub speaks IPv4 only", dst)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	hop := dst
	if !vm.addr.Contains(dst) {
		if !vm.gw.IsValid() {
			return fmt.Errorf("ping %s: not in %s and no gateway", dst, vm.addr.Masked())
		}
		hop = vm.gw
	}
	mac, err := vm.resolve(hop, deadline.C)
	if err != nil {
		return fmt.Errorf("ping %s: %w", dst, err)
	}
	c := make(chan struct{}, 1)
	vm.mu.Lock()
	vm.seq++
	seq := vm.seq
	vm.echoWait[seq] = c
	vm.mu.Unlock()
	defer func() {
		vm.mu.Lock()
		delete(vm.echoWait, seq)
		vm.mu.Unlock()
	}()
	if err := vm.send(ipv4Frame(vm.mac, mac, vm.addr.Addr(), dst, echoRequest(vm.id, seq))); err != nil {
		return fmt.Errorf("ping %s: send: %w", dst, err)
	}
	select {
	case <-c:
		return nil
	case <-deadline.C:
		return fmt.Errorf("ping %s: no echo reply within %s", dst, timeout)
	case <-vm.done:
		return fmt.Errorf("ping %s: the stub's tap is closed", dst)
	}
}

// resolve returns ip's MAC from the cache or by ARP, until expired fires.
func (vm *VM) resolve(ip netip.Addr, expired <-chan time.Time) (net.HardwareAddr, error) {
	c := make(chan struct{}, 1)
	vm.mu.Lock()
	mac, ok := vm.neigh[ip]
	if !ok {
		vm.arpWait[ip] = c
	}
	vm.mu.Unlock()
	if ok {
		return mac, nil
	}
	defer func() {
		vm.mu.Lock()
		delete(vm.arpWait, ip)
		vm.mu.Unlock()
	}()
	resend := time.NewTicker(200 * time.Millisecond)
	defer resend.Stop()
	req := arpFrame(1, vm.mac, vm.addr.Addr(), broadcast, ip)
	if err := vm.send(req); err != nil {
		return nil, fmt.Errorf("send ARP request for %s: %w", ip, err)
	}
	for {
		select {
		case <-c:
			vm.mu.Lock()
			mac := vm.neigh[ip]
			vm.mu.Unlock()
			return mac, nil
		case <-resend.C:
			if err := vm.send(req); err != nil {
				return nil, fmt.Errorf("send ARP request for %s: %w", ip, err)
			}
		case <-expired:
			return nil, fmt.Errorf("no ARP reply from %s", ip)
		case <-vm.done:
			return nil, errors.New("the stub's tap is closed")
		}
	}
}

// arpFrame is an ARP request (op 1, to broadcast) or reply (op 2) for
// IPv4 over Ethernet.
func arpFrame(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	f := make([]byte, ethHdrLen+arpLen)
	copy(f[0:6], tha)
	copy(f[6:12], sha)
	binary.BigEndian.PutUint16(f[12:14], etherARP)
	a := f[ethHdrLen:]
	binary.BigEndian.PutUint16(a[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(a[2:4], etherIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], sha)
	s4, t4 := spa.As4(), tpa.As4()
	copy(a[14:18], s4[:])
	if op == 2 {
		copy(a[18:24], tha)
	}
	copy(a[24:28], t4[:])
	return f
}

// ipv4Frame wraps an ICMP message in IPv4 (TTL 64, DF) and Ethernet.
func ipv4Frame(src, dst net.HardwareAddr, from, to netip.Addr, icmp []byte) []byte {
	f := make([]byte, ethHdrLen+20+len(icmp))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], etherIPv4)
	ip := f[ethHdrLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+len(icmp)))
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip[8], ip[9] = 64, unix.IPPROTO_ICMP
	f4, t4 := from.As4(), to.As4()
	copy(ip[12:16], f4[:])
	copy(ip[16:20], t4[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip[:20]))
	copy(ip[20:], icmp)
	return f
}

// echoRequest is an ICMP echo request with a recognisable payload.
func echoRequest(id, seq uint16) []byte {
	m := append(make([]byte, 8), "pontoon vmstub ping payload....."...)
	m[0] = 8
	binary.BigEndian.PutUint16(m[4:6], id)
	binary.BigEndian.PutUint16(m[6:8], seq)
	binary.BigEndian.PutUint16(m[2:4], checksum(m))
	return m
}

// checksum is the Internet checksum (RFC 1071); over data that carries a
// correct checksum it is 0.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
