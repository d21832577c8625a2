package sshx

import (
	"fmt"
	"regexp"
	"sync"

	"golang.org/x/crypto/ssh"
)

// nodeNameRE is what a joining node may call itself.
var nodeNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) }) // compiled at first use

// authPublicKey is the server's PublicKeyCallback. A user certificate
// signed by the cluster CA makes an agent; a plain key is looked up with the
// Authorizer. The Permissions are built here, never copied from the
// certificate.
func (s *Server) authPublicKey(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	remote := conn.RemoteAddr().String()
	if cert, ok := key.(*ssh.Certificate); ok {
		fp := ssh.FingerprintSHA256(cert.Key)
		if err := checkAgentCert(s.cfg.Identity.CA, cert, ssh.UserCert); err != nil {
			s.log.Warn("refused agent certificate", "remote", remote, "key_id", cert.KeyId, "fingerprint", fp, "err", err)
			return nil, err
		}
		return perms(RoleAgent, cert.KeyId, fp), nil
	}
	fp := ssh.FingerprintSHA256(key)
	if s.cfg.Authorizer == nil {
		s.log.Warn("refused operator key: this agent has no operator list", "remote", remote, "fingerprint", fp)
		return nil, fmt.Errorf("%w: no operator keys accepted", ErrUnauthorized)
	}
	role, name, ok := s.cfg.Authorizer.OperatorRole(fp)
	if !ok {
		s.log.Warn("refused key "+fp+": not an operator key; a controller can add it with `ferry operator add --role viewer|controller KEYFILE`",
			"remote", remote, "user", conn.User(), "fingerprint", fp)
		return nil, fmt.Errorf("%w: key %s is not an operator key", ErrUnauthorized, fp)
	}
	if role != RoleController && role != RoleViewer {
		s.log.Error("authorizer returned an unknown role; key refused", "fingerprint", fp, "role", role)
		return nil, fmt.Errorf("%w: key %s has unknown role %q", ErrUnauthorized, fp, role)
	}
	return perms(role, name, fp), nil
}

// authPassword is the server's PasswordCallback: the password is a join
// token and the user name the joining node's name.
func (s *Server) authPassword(conn ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
	remote := conn.RemoteAddr().String()
	name := conn.User()
	refuse := func(why string, err error) (*ssh.Permissions, error) {
		s.log.Warn("refused join: "+why, "remote", remote, "node", name, "err", err)
		return nil, fmt.Errorf("%w: %s", ErrJoinRefused, why)
	}
	if s.cfg.JoinHandler == nil {
		return refuse("this agent does not admit joins", nil)
	}
	if !nodeNameRE().MatchString(name) {
		return refuse(fmt.Sprintf("node name %q is not valid (letters, digits, '.', '_', '-'; at most 63)", name), nil)
	}
	token := string(password)
	fp, _, err := ParseToken(token)
	if err != nil {
		return refuse("malformed token", err)
	}
	if fp != s.caFP {
		return refuse(fmt.Sprintf("token is for cluster CA %s, this cluster's CA is %s", fp, s.caFP), nil)
	}
	if err := s.cfg.JoinHandler.CheckToken(token); err != nil {
		return refuse("token not valid", err)
	}
	p := perms(RoleJoining, name, "")
	p.Extensions[extToken] = token
	return p, nil
}

func perms(role, name, fp string) *ssh.Permissions {
	return &ssh.Permissions{Extensions: map[string]string{extRole: role, extName: name, extFP: fp}}
}
