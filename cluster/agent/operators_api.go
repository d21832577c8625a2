package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"golang.org/x/crypto/ssh"
)

// The operators API: GET/POST /v1/operators, DELETE /v1/operators/{id} (ID or name), GET /v1/cluster/ca, and
// POST /v1/internal/disconnect, with which the agent that removed an operator asks the others to close the
// operator's SSH connections. Writes go through raft; any caller may list, only controllers and root change.

// sessionCloser closes the SSH connections authenticated with a key. The router's Peers (the Agent) implements
// it; without it, a removed operator's open connections last until they close.
type sessionCloser interface {
	DisconnectOperator(fingerprint string) int
}

// caSource gives the cluster CA's public key. The router's Peers (the Agent) implements it.
type caSource interface {
	ClusterCA() ssh.PublicKey
}

// DisconnectOperator closes this agent's SSH connections authenticated with the key and returns how many.
func (a *Agent) DisconnectOperator(fingerprint string) int {
	if a.srv == nil {
		return 0
	}
	return a.srv.Disconnect(fingerprint)
}

// ClusterCA is the public key of the CA that signs the cluster's certificates.
func (a *Agent) ClusterCA() ssh.PublicKey { return a.creds.id.CA }

// maxOperatorName bounds an operator's name.
const maxOperatorName = 64

// selfDisconnectDelay lets the answer to an operator who removed their own key leave before their
// connection is closed.
const selfDisconnectDelay = 500 * time.Millisecond

// DisconnectRequest is the body of POST /v1/internal/disconnect.
type DisconnectRequest struct {
	ID string `json:"id"`
}

func operatorView(o *cluster.Operator) api.OperatorView {
	return api.OperatorView{ID: o.ID, Name: o.Name, Role: string(o.Role), PublicKey: o.PublicKey}
}

func mayManageOperators(c Caller) error {
	if c.Role == "root" || c.Role == string(cluster.RoleController) {
		return nil
	}
	return fmt.Errorf("%w: %s (%s) may not change operators; only a controller, or root on the agent's socket, may", api.ErrForbidden, c.Name, c.Role)
}

func (rt *Router) listOperators(w http.ResponseWriter, r *http.Request) {
	out := []api.OperatorView{}
	rt.store.View(func(s *cluster.State) {
		for _, o := range s.OperatorList() {
			out = append(out, operatorView(o))
		}
	})
	api.WriteJSON(w, 200, out)
}

func (rt *Router) addOperator(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	if err := mayManageOperators(c); err != nil {
		api.WriteError(w, err)
		return
	}
	op, err := rt.newOperator(r.Body)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	if _, err := rt.store.Apply(r.Context(), &cluster.AddOperator{Operator: op}); err != nil {
		api.WriteError(w, clusterError(err))
		return
	}
	rt.log.Info("operator added", "operator", op.Name, "role", op.Role, "key", op.ID, "by", c.Name)
	api.WriteJSON(w, 200, operatorView(&op))
}

// newOperator reads an AddOperatorRequest and checks it against the state: one key, a known role, a name
// that is printable and not already taken.
func (rt *Router) newOperator(body io.Reader) (cluster.Operator, error) {
	var req api.AddOperatorRequest
	if err := json.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&req); err != nil {
		return cluster.Operator{}, fmt.Errorf("%w: operator request: %v", node.ErrInvalid, err)
	}
	role := cluster.Role(req.Role)
	if role != cluster.RoleController && role != cluster.RoleViewer {
		return cluster.Operator{}, fmt.Errorf("%w: role %q: use controller or viewer", node.ErrInvalid, req.Role)
	}
	ops, err := ParseOperatorKeys([]byte(req.PublicKey), role)
	if err != nil {
		return cluster.Operator{}, fmt.Errorf("%w: %v", node.ErrInvalid, err)
	}
	if len(ops) != 1 {
		return cluster.Operator{}, fmt.Errorf("%w: the key file holds %d keys; add them one at a time", node.ErrInvalid, len(ops))
	}
	op := ops[0]
	if req.Name != "" {
		op.Name = req.Name
	}
	if err := checkOperatorName(op.Name); err != nil {
		return cluster.Operator{}, err
	}
	var taken *cluster.Operator
	rt.store.View(func(s *cluster.State) {
		for _, o := range s.Operators {
			if o.Name == op.Name && o.ID != op.ID {
				taken = o.Clone()
			}
		}
	})
	if taken != nil {
		return cluster.Operator{}, fmt.Errorf("%w: an operator named %s already exists (key %s); choose another name with --name", node.ErrExists, op.Name, taken.ID)
	}
	return op, nil
}

func checkOperatorName(name string) error {
	bad := len(name) > maxOperatorName || strings.HasPrefix(name, "SHA256:")
	for _, r := range name {
		bad = bad || !unicode.IsPrint(r) || unicode.IsSpace(r)
	}
	if name == "" || bad {
		return fmt.Errorf("%w: operator name %q: use up to %d printable characters without spaces, not starting with SHA256: (set it with --name)",
			node.ErrInvalid, name, maxOperatorName)
	}
	return nil
}

func (rt *Router) removeOperator(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	if err := mayManageOperators(c); err != nil {
		api.WriteError(w, err)
		return
	}
	op, err := rt.findOperator(r.PathValue("id"))
	if err != nil {
		api.WriteError(w, err)
		return
	}
	if _, err := rt.store.Apply(r.Context(), &cluster.RemoveOperator{ID: op.ID}); err != nil {
		if errors.Is(err, cluster.ErrUnknownOperator) {
			err = fmt.Errorf("%w: %v", node.ErrNotFound, err)
		}
		api.WriteError(w, clusterError(err))
		return
	}
	res := api.RemoveOperatorResponse{Operator: operatorView(&op)}
	if c.Role == string(op.Role) && c.Name == op.Name { // removing one's own key: answer before hanging up
		time.AfterFunc(selfDisconnectDelay, func() { rt.disconnectEverywhere(context.Background(), op.ID) })
	} else {
		res.Disconnected = rt.disconnectEverywhere(r.Context(), op.ID)
	}
	rt.log.Info("operator removed", "operator", op.Name, "key", op.ID, "by", c.Name, "connections_closed", res.Disconnected)
	api.WriteJSON(w, 200, res)
}

// findOperator finds an operator by ID (with or without "SHA256:") or by name.
func (rt *Router) findOperator(idOrName string) (cluster.Operator, error) {
	var found []cluster.Operator
	rt.store.View(func(s *cluster.State) {
		for _, id := range []string{idOrName, "SHA256:" + idOrName} {
			if o, ok := s.Operators[id]; ok {
				found = []cluster.Operator{*o}
				return
			}
		}
		for _, o := range s.OperatorList() {
			if o.Name == idOrName {
				found = append(found, *o)
			}
		}
	})
	switch len(found) {
	case 0:
		return cluster.Operator{}, fmt.Errorf("%w: no operator with ID or name %q (ferry operator ls lists them)", node.ErrNotFound, idOrName)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, o := range found {
		ids[i] = o.ID
	}
	return cluster.Operator{}, fmt.Errorf("%w: %d operators are named %s; remove one by ID: %s", node.ErrInvalid, len(found), idOrName, strings.Join(ids, ", "))
}

// disconnectEverywhere closes the operator key's SSH connections on this agent and asks every other live
// agent to do the same; it returns how many connections were closed. Agents that do not answer are logged.
func (rt *Router) disconnectEverywhere(ctx context.Context, id string) int {
	n := 0
	if sc, ok := rt.peers.(sessionCloser); ok {
		n = sc.DisconnectOperator(id)
	}
	var others []*cluster.Node
	rt.store.View(func(s *cluster.State) {
		for _, nd := range s.NodeList() {
			if nd.Name != rt.self && nd.Status != cluster.StatusDead && nd.Status != cluster.StatusLeft && nd.Addr != "" {
				others = append(others, nd)
			}
		}
	})
	if len(others) == 0 || rt.peers == nil {
		return n
	}
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, nd := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := rt.askDisconnect(ctx, nd.Addr, id)
			mu.Lock()
			defer mu.Unlock()
			n += k
			if err != nil {
				rt.log.Warn("could not ask a node to close a removed operator's connections; they last until they close",
					"node", nd.Name, "key", id, "err", err)
			}
		}()
	}
	wg.Wait()
	return n
}

func (rt *Router) askDisconnect(ctx context.Context, addr, id string) (int, error) {
	b, _ := json.Marshal(DisconnectRequest{ID: id})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/internal/disconnect", strings.NewReader(string(b)))
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: rt.peers.Transport()}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out api.RemoveOperatorResponse
	if resp.StatusCode >= 300 {
		return 0, fmt.Errorf("the agent at %s answered %s", addr, resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out)
	return out.Disconnected, err
}

// disconnect serves POST /v1/internal/disconnect: another agent removed an operator.
func (rt *Router) disconnect(w http.ResponseWriter, r *http.Request) {
	if callerOf(r).Role != "agent" {
		api.WriteError(w, fmt.Errorf("%w: only agents ask to close connections; use ferry operator rm", api.ErrForbidden))
		return
	}
	var req DisconnectRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.ID == "" {
		api.WriteError(w, fmt.Errorf("%w: disconnect request without a key ID", node.ErrInvalid))
		return
	}
	n := 0
	if sc, ok := rt.peers.(sessionCloser); ok {
		n = sc.DisconnectOperator(req.ID)
	}
	api.WriteJSON(w, 200, api.RemoveOperatorResponse{Operator: api.OperatorView{ID: req.ID}, Disconnected: n})
}

// clusterCA serves GET /v1/cluster/ca: the key operators pin with FERRY_CA_KEY.
func (rt *Router) clusterCA(w http.ResponseWriter, r *http.Request) {
	src, ok := rt.peers.(caSource)
	if !ok || src.ClusterCA() == nil {
		api.WriteError(w, fmt.Errorf("%w: this agent does not know its cluster CA", node.ErrUnavailable))
		return
	}
	ca := src.ClusterCA()
	api.WriteJSON(w, 200, api.CAResponse{
		PublicKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca))) + " ferry-cluster-ca",
		Fingerprint: ssh.FingerprintSHA256(ca),
	})
}
