package dns

import (
	"log/slog"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
