package sshx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// LoadSigner reads an operator's unencrypted private key file (OpenSSH,
// PKCS#1/#8 or SEC1 PEM). An encrypted key gives ErrEncryptedKey with the
// advice to load it into ssh-agent, which AgentSigners then uses.
func LoadSigner(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read SSH key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		return nil, fmt.Errorf("%w: %s is protected by a passphrase; run `ssh-add %s` and let Ferry use the ssh-agent", ErrEncryptedKey, path, path)
	case err != nil && strings.HasSuffix(path, ".pub"):
		return nil, fmt.Errorf("%w: %s is a public key; give the private key file (without .pub)", ErrIdentity, path)
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %v", ErrIdentity, path, err)
	}
	return s, nil
}

// AgentSigners returns the keys of the ssh-agent at $SSH_AUTH_SOCK. The
// agent connection stays open for the life of the process, since the
// signers use it for every signature.
func AgentSigners() ([]ssh.Signer, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, fmt.Errorf("%w: SSH_AUTH_SOCK is not set; start ssh-agent or give a key file", ErrConfig)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connect to ssh-agent at %s: %w", sock, err)
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("list ssh-agent keys: %w", err)
	}
	if len(signers) == 0 {
		conn.Close()
		return nil, fmt.Errorf("%w: the ssh-agent at %s holds no keys; run `ssh-add KEYFILE`", ErrConfig, sock)
	}
	return signers, nil
}
