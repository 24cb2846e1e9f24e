package api

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// revision is set by scripts/build.sh (-ldflags -X) from `git describe`,
// for builds Go does not stamp with VCS information itself: GOFLAGS with
// -buildvcs=false, or a git worktree (whose .git is a file Go does not
// recognise).
var revision string

// Build describes the running binary: its module version (Go stamps it
// from the VCS: a tag, or a pseudo-version with the commit, "+dirty" when
// the tree had uncommitted changes), the commit and its time, and the Go
// toolchain, e.g.
//
//	v0.0.0-20250101120000-0123456789ab (commit 0123456789ab, 2025-01-01T12:00:00Z; go1.26.8 linux/amd64)
//
// The CLI prints it for `pontoon --version` and `pontoon version`; the
// daemon reports its own in GET /v1/status, so the two can be compared.
func Build() string {
	goVer := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown build (" + goVer + ")"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var detail []string
	if rev != "" {
		c := "commit " + rev[:min(12, len(rev))]
		if at != "" {
			c += ", " + at
		}
		if modified {
			c += ", with uncommitted changes"
		}
		detail = append(detail, c)
	} else if revision != "" {
		detail = append(detail, "git "+revision)
	} else {
		detail = append(detail, "built without version control information")
	}
	return version + " (" + strings.Join(detail, "; ") + "; " + goVer + ")"
}
