package dns

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// addrs parses addresses.
func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// prefixes parses prefixes, host bits and all.
func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func getsockoptUint64(fd, level, opt int, v *uint64) error {
	l := uint32(unsafe.Sizeof(*v))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(v)), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// wireRR is one answer record as it is on the wire.
type wireRR struct {
	pointer bool // the owner name ends in a compression pointer
	ttl     uint32
}

// wireAnswers walks a packed DNS message by hand (not with the library that
// packed it) and returns its answer records.
func wireAnswers(b []byte) ([]wireRR, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("message of %d bytes has no header", len(b))
	}
	qd, an := int(binary.BigEndian.Uint16(b[4:])), int(binary.BigEndian.Uint16(b[6:]))
	off := 12
	// name skips a name at off and reports whether it ends in a pointer.
	name := func() (bool, error) {
		for {
			if off >= len(b) {
				return false, fmt.Errorf("name at %d runs past the end", off)
			}
			l := int(b[off])
			switch {
			case l == 0:
				off++
				return false, nil
			case l&0xC0 == 0xC0:
				off += 2
				return true, nil
			case l&0xC0 != 0:
				return false, fmt.Errorf("label type %#x at %d", l, off)
			default:
				off += 1 + l
			}
		}
	}
	for range qd {
		if _, err := name(); err != nil {
			return nil, err
		}
		off += 4
	}
	var out []wireRR
	for i := range an {
		ptr, err := name()
		if err != nil {
			return nil, err
		}
		if off+10 > len(b) {
			return nil, fmt.Errorf("answer %d: record header runs past the end", i)
		}
		rr := wireRR{pointer: ptr, ttl: binary.BigEndian.Uint32(b[off+4:])}
		off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
		if off > len(b) {
			return nil, fmt.Errorf("answer %d: data runs past the end", i)
		}
		out = append(out, rr)
	}
	return out, nil
}
