package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferryhq/ferry/transfer/sshx"
)

// Files under DataDir/identity.
const (
	identityDir = "identity"
	caKeyFile   = "ca_key"         // only on the agent that made the cluster
	secretFile  = "cluster_secret" // gossip key and join tokens are derived from it
)

// How an agent started, as far as its identity goes.
type startKind int

const (
	startMade      startKind = iota // it made a new cluster
	startJoined                     // it joined a cluster just now
	startRestarted                  // it had an identity from an earlier run
)

// credentials are what the agent proves itself with and trusts.
type credentials struct {
	id     *sshx.Identity
	ca     *sshx.CA // nil on agents that joined: they cannot admit others
	secret []byte
}

// loadOrMakeCredentials loads the agent's identity from its data dir; on the first start it makes a new
// cluster (CA, secret, certificates) or, with Join, obtains its certificates from a member with the token.
func loadOrMakeCredentials(ctx context.Context, cfg Config) (*credentials, startKind, error) {
	dir := filepath.Join(cfg.DataDir, identityDir)
	if id, err := sshx.LoadIdentity(dir); err == nil {
		c := &credentials{id: id}
		if c.secret, err = os.ReadFile(filepath.Join(dir, secretFile)); err != nil {
			return nil, startRestarted, fmt.Errorf("reading the cluster secret: %w", err)
		}
		if ca, err := sshx.LoadCA(filepath.Join(dir, caKeyFile)); err == nil {
			c.ca = ca
		}
		if id.Name != cfg.Name {
			return nil, startRestarted, fmt.Errorf("%s holds the identity of node %s, not %s; start it with --name %s or use another --data-dir", cfg.DataDir, id.Name, cfg.Name, id.Name)
		}
		return c, startRestarted, nil
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, sshx.ErrIdentity) {
		return nil, startRestarted, err
	}
	if len(cfg.Join) > 0 {
		c, err := joinCluster(ctx, cfg)
		return c, startJoined, err
	}
	c, err := makeCluster(cfg)
	return c, startMade, err
}

func makeCluster(cfg Config) (*credentials, error) {
	ca, err := sshx.NewCA()
	if err != nil {
		return nil, err
	}
	secret, err := sshx.NewSecret()
	if err != nil {
		return nil, err
	}
	id, err := ca.NewIdentity(cfg.Name, 0)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.DataDir, identityDir)
	if err := save(dir, id, secret); err != nil {
		return nil, err
	}
	if err := ca.Save(filepath.Join(dir, caKeyFile)); err != nil {
		return nil, err
	}
	cfg.Logger.Info("made a new cluster", "ca", ca.Fingerprint())
	return &credentials{id: id, ca: ca, secret: secret}, nil
}

func joinCluster(ctx context.Context, cfg Config) (*credentials, error) {
	fp, _, err := sshx.ParseToken(cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("%w: --token: %v", errBadJoin, err)
	}
	id, err := sshx.GenerateIdentity(cfg.Name)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range cfg.Join {
		grant, err := sshx.Join(ctx, addr, cfg.Token, id.Signer, cfg.Name, fp)
		if err != nil {
			if !errors.Is(err, sshx.ErrJoinRefused) && !errors.Is(err, sshx.ErrUnknownCA) && !errors.Is(err, sshx.ErrBadToken) {
				err = fmt.Errorf("%w; check the address (ferry node ls on a member lists them) and that its agent runs", err)
			}
			errs = append(errs, err)
			continue
		}
		if err := id.Apply(grant); err != nil {
			return nil, err
		}
		if err := save(filepath.Join(cfg.DataDir, identityDir), id, grant.ClusterSecret); err != nil {
			return nil, err
		}
		cfg.Logger.Info("joined the cluster", "through", addr, "ca", fp)
		return &credentials{id: id, secret: grant.ClusterSecret}, nil
	}
	return nil, fmt.Errorf("%w: %w", errBadJoin, errors.Join(errs...))
}

func save(dir string, id *sshx.Identity, secret []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := id.Save(dir); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, secretFile), secret, 0o600)
}

var errBadJoin = errors.New("could not join the cluster")
