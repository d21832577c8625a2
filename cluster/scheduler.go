package cluster

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// PlacementRequest describes a container to place.
type PlacementRequest struct {
	// MemoryBytes is the container's memory limit; 0 asks for no reservation.
	MemoryBytes int64
	// PinnedNode, if set, is the only node considered (ferry run --node).
	PinnedNode string
	// Exclude lists nodes not to consider (a migration's source).
	Exclude []string
}

// Place picks a node for a new container. A node qualifies when it is
// alive, eligible, not in maintenance, not excluded, and its free memory
// minus what State.ReservedMemory counts as taken covers the request. Among
// those it spreads: fewest containers first, then most memory left, then
// name. The state is only read.
func Place(state *State, req PlacementRequest) (string, error) {
	if req.PinnedNode != "" {
		return placePinned(state, req)
	}
	var cands []candidate
	var best *candidate // the qualifying-but-for-memory node with the most room
	usable := 0
	for _, n := range state.Nodes {
		if usableNode(n) != nil || slices.Contains(req.Exclude, n.Name) {
			continue
		}
		usable++
		c := candidate{n.Name, len(state.ContainersOn(n.Name)), n.FreeMemory - state.ReservedMemory(n.Name)}
		if c.left >= req.MemoryBytes {
			cands = append(cands, c)
		} else if best == nil || c.left > best.left {
			best = &c
		}
	}
	if len(cands) == 0 {
		if usable == 0 {
			return "", errorf(ErrNoCapacity, "no node is alive, eligible and out of maintenance (of %d nodes); undrain a node or add one", len(state.Nodes))
		}
		return "", errorf(ErrNoCapacity, "no node has %s free for the container (most free: %s with %s); free memory, lower --memory or add a node",
			fmtBytes(req.MemoryBytes), best.name, fmtBytes(max(best.left, 0)))
	}
	return spread(cands), nil
}

// candidate is a node that can take a container, with what the spreading looks at.
type candidate struct {
	name       string
	containers int
	left       int64 // free memory left after what is reserved
}

// spread picks among cands (not empty) the one with the fewest containers, then the most memory left, then
// the first name: the cluster's one spreading rule.
func spread(cands []candidate) string {
	return slices.MinFunc(cands, func(a, b candidate) int {
		if a.containers != b.containers {
			return cmp.Compare(a.containers, b.containers)
		}
		if a.left != b.left {
			return cmp.Compare(b.left, a.left)
		}
		return strings.Compare(a.name, b.name)
	}).name
}

func placePinned(state *State, req PlacementRequest) (string, error) {
	name := req.PinnedNode
	n, ok := state.Nodes[name]
	if !ok {
		return "", errorf(ErrUnknownNode, "node %s is not in the cluster; list the nodes with 'ferry node ls'", name)
	}
	if slices.Contains(req.Exclude, name) {
		return "", errorf(ErrInvalid, "node %s is both the pinned node and excluded; choose another target", name)
	}
	if err := usableNode(n); err != nil {
		return "", err
	}
	if left := n.FreeMemory - state.ReservedMemory(name); left < req.MemoryBytes {
		return "", errorf(ErrNoCapacity, "node %s has %s free, the container asks for %s; choose another node or free memory",
			name, fmtBytes(max(left, 0)), fmtBytes(req.MemoryBytes))
	}
	return name, nil
}

// usableNode returns why n takes no new containers, or nil.
func usableNode(n *Node) error {
	switch {
	case n.Status != StatusAlive:
		return errorf(ErrNodeUnavailable, "node %s is %s; choose another node or wait until it is alive again", n.Name, n.Status)
	case !n.Eligible:
		return errorf(ErrNodeDraining, "node %s is draining; choose another target or undrain it ('ferry node undrain %s')", n.Name, n.Name)
	case n.Maintenance:
		return errorf(ErrNodeMaintenance, "node %s is in maintenance; choose another target or end it ('ferry node maintenance off %s')", n.Name, n.Name)
	}
	return nil
}

func fmtBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTP"[exp])
}
