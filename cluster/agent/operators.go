package agent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"golang.org/x/crypto/ssh"
)

// operators is the SSH server's Authorizer: operator keys and their roles, from the raft state.
type operators struct{ a *Agent }

// OperatorRole implements sshx.Authorizer.
func (o operators) OperatorRole(fingerprint string) (role, name string, ok bool) {
	o.a.store.View(func(s *cluster.State) {
		if op, found := s.Operators[fingerprint]; found {
			role, name, ok = string(op.Role), op.Name, true
		}
	})
	return role, name, ok
}

// ParseOperatorKeys reads authorized_keys-format public keys (one or more) as operators of a role. The
// comment of each key becomes the operator's name.
func ParseOperatorKeys(data []byte, role cluster.Role) ([]cluster.Operator, error) {
	var ops []cluster.Operator
	rest := data
	for len(strings.TrimSpace(string(rest))) > 0 {
		pub, comment, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return nil, fmt.Errorf("not an SSH public key (use the .pub file, authorized_keys format): %w", err)
		}
		rest = r
		if _, isCert := pub.(*ssh.Certificate); isCert {
			return nil, fmt.Errorf("a certificate is not an operator key; give the plain public key")
		}
		name := comment
		if name == "" {
			name = ssh.FingerprintSHA256(pub)[7:19]
		}
		ops = append(ops, cluster.Operator{ID: ssh.FingerprintSHA256(pub), Name: name, Role: role,
			PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))})
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("no public key found")
	}
	return ops, nil
}

// addFirstControllers makes the keys of --controller-key controllers once the new cluster has a leader.
func (a *Agent) addFirstControllers() {
	data, err := os.ReadFile(a.cfg.ControllerKey)
	if err == nil {
		var ops []cluster.Operator
		if ops, err = ParseOperatorKeys(data, cluster.RoleController); err == nil {
			ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
			defer cancel()
			if _, err = a.store.WaitLeader(ctx); err == nil {
				for _, op := range ops {
					if _, err = a.store.Apply(ctx, &cluster.AddOperator{Operator: op}); err != nil {
						break
					}
					a.log.Info("controller added", "operator", op.Name, "key", op.ID)
				}
			}
		}
	}
	if err != nil && a.ctx.Err() == nil {
		a.log.Error("--controller-key: could not add the first controller", "file", a.cfg.ControllerKey, "err", err)
	}
}
