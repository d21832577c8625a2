package migrate

import (
	"fmt"
	"strings"
)

// Modes.
const (
	ModeAuto     = "auto"
	ModeStopCopy = "stop-copy"
	ModePreCopy  = "pre-copy"
	ModePostCopy = "post-copy"
)

// Feature names a mode needs, as the nodes' CRIU probes report them.
const (
	featureDirtyTrack = "mem_dirty_track"
	featureUFFD       = "uffd"
)

// ChooseMode resolves the requested mode against what both nodes' CRIU can do. It returns the mode to run,
// or an error (wrapping ErrMode) that says which node lacks what. Auto never picks post-copy: whether
// CRIU's lazy-pages migration works is known only from a live probe on both nodes, which the
// caller runs when post-copy is asked for (see node.Agent.ProbePostCopy).
func ChooseMode(requested string, src, dst string, srcFeatures, dstFeatures []string) (string, error) {
	has := func(fs []string, f string) bool {
		for _, x := range fs {
			if x == f {
				return true
			}
		}
		return false
	}
	lacks := func(f string) []string {
		var out []string
		if !has(srcFeatures, f) {
			out = append(out, src)
		}
		if !has(dstFeatures, f) {
			out = append(out, dst)
		}
		return out
	}
	switch requested {
	case "", ModeAuto:
		if len(lacks(featureDirtyTrack)) == 0 {
			return ModePreCopy, nil
		}
		return ModeStopCopy, nil
	case ModeStopCopy:
		return ModeStopCopy, nil
	case ModePreCopy:
		if l := lacks(featureDirtyTrack); len(l) > 0 {
			return "", fmt.Errorf("%w: pre-copy needs soft-dirty memory tracking (CRIU feature %s), which %s lack(s) (the kernel is built without CONFIG_MEM_SOFT_DIRTY); use --mode stop-copy",
				ErrMode, featureDirtyTrack, strings.Join(l, " and "))
		}
		return ModePreCopy, nil
	case ModePostCopy:
		if l := lacks(featureUFFD); len(l) > 0 {
			return "", fmt.Errorf("%w: post-copy needs userfaultfd (CRIU feature %s), which %s lack(s); use --mode stop-copy", ErrMode, featureUFFD, strings.Join(l, " and "))
		}
		return ModePostCopy, nil
	}
	return "", fmt.Errorf("%w: unknown mode %q: use auto, stop-copy, pre-copy or post-copy", ErrMode, requested)
}
