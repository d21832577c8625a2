package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/transfer/sshx"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

// The command line over SSH: --addr ssh://HOST:PORT reaches an agent's API through its SSH port, as an
// operator. The key is --identity (FERRY_IDENTITY), else the ssh-agent's keys, else ~/.ssh/id_ed25519,
// id_ecdsa or id_rsa if unencrypted. The agent's host certificate must come from the cluster CA pinned with
// FERRY_CA_KEY=FILE, or else the CA recorded for the address in ~/.config/ferry/known_cas (trusted on first
// use and recorded there).

// defaultKeyFiles are tried, in order, under ~/.ssh when there is no --identity and no ssh-agent.
var defaultKeyFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// sshClient returns an API client for the agent at ssh://HOST:PORT. It connects at once, so that a refused
// key or an unknown CA is reported as such rather than as an unreachable agent.
func sshClient(addr string) (*api.Client, error) {
	hostport := strings.TrimPrefix(addr, "ssh://")
	if _, port, err := net.SplitHostPort(hostport); err != nil || port == "" {
		return nil, usagef("--addr %s: use ssh://HOST:PORT, the agent's SSH port (ferry node ls shows the addresses)", addr)
	}
	keys, err := operatorKeys(g.identity)
	if err != nil {
		return nil, err
	}
	d := &sshx.Dialer{Signers: keys.signers}
	if err := trustCA(d); err != nil {
		return nil, err
	}
	pool := sshx.NewPool(d)
	ctx, cancel := context.WithTimeout(context.Background(), sshx.DefaultDialTimeout)
	defer cancel()
	if _, err := pool.Conn(ctx, hostport); err != nil {
		pool.Close()
		return nil, explainDial(hostport, keys, err)
	}
	return api.NewClient(addr, agentHost{hostport, sshx.HTTPTransport(pool, sshx.ChannelAPI)}), nil
}

// agentHost sends every request to the agent at addr, whatever host the API client put in the URL.
type agentHost struct {
	addr string
	rt   http.RoundTripper
}

func (a agentHost) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host, r.Host = a.addr, a.addr
	return a.rt.RoundTrip(r)
}

// keySet is the operator's keys and where they came from, for messages.
type keySet struct {
	signers []ssh.Signer
	from    string
}

func (k keySet) fingerprints() string {
	fps := make([]string, len(k.signers))
	for i, s := range k.signers {
		fps[i] = ssh.FingerprintSHA256(s.PublicKey())
	}
	return strings.Join(fps, ", ")
}

// operatorKeys finds the operator's SSH keys: the identity file, else the ssh-agent's, else the default files.
func operatorKeys(identity string) (keySet, error) {
	if identity != "" {
		s, err := sshx.LoadSigner(identity)
		if err != nil {
			return keySet{}, err
		}
		return keySet{[]ssh.Signer{s}, identity}, nil
	}
	var notes []string
	if os.Getenv("SSH_AUTH_SOCK") != "" {
		signers, err := sshx.AgentSigners()
		if err == nil {
			return keySet{signers, "the ssh-agent"}, nil
		}
		notes = append(notes, err.Error())
	}
	home, _ := os.UserHomeDir()
	var ks keySet
	var files []string
	for _, name := range defaultKeyFiles {
		path := filepath.Join(home, ".ssh", name)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		s, err := sshx.LoadSigner(path)
		if err != nil {
			notes = append(notes, err.Error())
			continue
		}
		ks.signers = append(ks.signers, s)
		files = append(files, path)
	}
	if len(ks.signers) > 0 {
		ks.from = strings.Join(files, ", ")
		return ks, nil
	}
	msg := "no SSH key to connect with: give --identity KEYFILE (or FERRY_IDENTITY), load a key into ssh-agent with ssh-add, " +
		"or make ~/.ssh/id_ed25519 with ssh-keygen -t ed25519; then a controller adds its .pub with `ferry operator add`"
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, "; ") + ")"
	}
	return keySet{}, fmt.Errorf("%w: %s", sshx.ErrUnauthorized, msg)
}

// trustCA sets how d checks the agent's host certificate: the CA of FERRY_CA_KEY, or the known CAs file.
func trustCA(d *sshx.Dialer) error {
	if f := os.Getenv("FERRY_CA_KEY"); f != "" {
		ca, err := readCAKey(f)
		if err != nil {
			return err
		}
		d.HostCA = ca
		return nil
	}
	path, err := knownCAsPath()
	if err != nil {
		return err
	}
	known, err := sshx.LoadKnownCAs(path)
	if err != nil {
		return fmt.Errorf("%w; fix or delete the line", err)
	}
	d.HostKeyCallback = known.HostKeyCallback(func(addr string, ca ssh.PublicKey) {
		fmt.Fprintf(os.Stderr, "ferry: first contact with %s: trusting its cluster CA %s and recording it in %s; "+
			"compare with `ferry cluster ca` on a member, or pin a CA with FERRY_CA_KEY=FILE\n", addr, ssh.FingerprintSHA256(ca), path)
	})
	return nil
}

// knownCAsPath is ~/.config/ferry/known_cas (or under $XDG_CONFIG_HOME).
func knownCAsPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no place for the known cluster CAs (%v); set HOME, or pin the CA with FERRY_CA_KEY=FILE", err)
	}
	return filepath.Join(dir, "ferry", "known_cas"), nil
}

// readCAKey reads a CA public key file: authorized_keys form, as `ferry cluster ca` prints it.
func readCAKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("FERRY_CA_KEY: %w", err)
	}
	ca, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("FERRY_CA_KEY=%s is not a public key in authorized_keys form (`ferry cluster ca` on a member prints it): %v", path, err)
	}
	return ca, nil
}

// explainDial turns a failed connection into a message that names the fix.
func explainDial(addr string, keys keySet, err error) error {
	switch {
	case errors.Is(err, sshx.ErrUnauthorized):
		what := "the key " + keys.fingerprints() + " (" + keys.from + ") is"
		if len(keys.signers) > 1 {
			what = "none of the keys " + keys.fingerprints() + " (" + keys.from + ") is"
		}
		return fmt.Errorf("%w: %s not an operator of the cluster at %s; a controller can add it with `ferry operator add --role viewer KEY.pub` (or --role controller)",
			sshx.ErrUnauthorized, what, addr)
	case errors.Is(err, sshx.ErrUnknownCA), errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("%w at ssh://%s: %v; is `ferry agent` running there, and is that its SSH port (ferry node ls shows the addresses)?", api.ErrUnreachable, addr, err)
}

// withClusterCA adds `ferry cluster ca` to the cluster command.
func withClusterCA(cmd *cobra.Command) *cobra.Command {
	cmd.AddCommand(&cobra.Command{
		Use:   "ca",
		Short: "Print the cluster CA's public key; operators pin it with FERRY_CA_KEY=FILE instead of trusting it on first use",
		Args:  needArgs(0, 0, "ferry cluster ca"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			ca, err := c.ClusterCA(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, ca)
			}
			fmt.Println(ca.PublicKey)
			fmt.Fprintln(os.Stderr, "fingerprint", ca.Fingerprint)
			return nil
		},
	})
	return cmd
}
