package cluster

import (
	"slices"
	"strings"
)

// MoveRequest describes a running container to move off its node (a drain).
type MoveRequest struct {
	// Container is the container's name (for messages).
	Container string
	// MemoryBytes is the container's memory limit; 0 asks for no reservation.
	MemoryBytes int64
	// Exclude lists nodes not to consider: the drained node, and targets a
	// migration of this container already failed on.
	Exclude []string
	// Compatible, when set, says why a node cannot restore what the source
	// dumps (its CRIU lacks a feature), or nil.
	Compatible func(*Node) error
}

// PlaceMove picks the target for a container leaving its node. A node
// qualifies as for Place (alive, eligible, not in maintenance, not excluded,
// free memory minus the reserved covers the limit) and when Compatible
// accepts it. Among those it spreads: fewest containers counting those an
// active migration is bringing there (so that a drain's parallel migrations do
// not all pick the same node), then most memory left, then name. The state is
// only read.
func PlaceMove(state *State, req MoveRequest) (string, error) {
	incoming := map[string]int{}
	for _, m := range state.Migrations {
		if !m.State.Final() {
			incoming[m.Target]++
		}
	}
	var cands []candidate
	var why []string
	for _, n := range state.NodeList() {
		if slices.Contains(req.Exclude, n.Name) {
			continue
		}
		if err := usableNode(n); err != nil {
			why = append(why, n.Name+" is "+nodeCondition(n))
			continue
		}
		if req.Compatible != nil {
			if err := req.Compatible(n); err != nil {
				why = append(why, err.Error())
				continue
			}
		}
		left := n.FreeMemory - state.ReservedMemory(n.Name)
		if left < req.MemoryBytes {
			why = append(why, n.Name+" has "+fmtBytes(max(left, 0))+" free")
			continue
		}
		cands = append(cands, candidate{n.Name, len(state.ContainersOn(n.Name)) + incoming[n.Name], left})
	}
	if len(cands) == 0 {
		detail := "no other node"
		if len(why) > 0 {
			detail = strings.Join(why, "; ")
		}
		return "", errorf(ErrNoCapacity, "no node can take %s (needs %s): %s; undrain or add a node, or free memory",
			req.Container, fmtBytes(req.MemoryBytes), detail)
	}
	return spread(cands), nil
}

// nodeCondition names why a node takes no new containers, in a few words.
func nodeCondition(n *Node) string {
	switch {
	case n.Status != StatusAlive:
		return string(n.Status)
	case !n.Eligible:
		return "draining"
	case n.Maintenance:
		return "in maintenance"
	}
	return "usable"
}
