package sshx

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
)

// TokenPrefix starts every join token; the digit is the format version.
const TokenPrefix = "ferry1."

// MinSecretLen is the shortest cluster secret a token may carry.
const MinSecretLen = 16

// maxFingerprintLen bounds the fingerprint inside a token.
const maxFingerprintLen = 128

// NewSecret returns 32 random bytes for a cluster secret.
func NewSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// NewToken encodes a join token: "ferry1." followed by base64url (no
// padding) of uvarint(len(fp)) || fp || secret. The CA fingerprint lets the
// joining node check that it talks to the right cluster before it sends
// anything; the secret proves to the cluster that the node may join.
func NewToken(caFingerprint string, secret []byte) string {
	buf := binary.AppendUvarint(nil, uint64(len(caFingerprint)))
	buf = append(buf, caFingerprint...)
	buf = append(buf, secret...)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(buf)
}

// ParseToken decodes a token made by NewToken. Surrounding white space is
// ignored (tokens are pasted). Errors wrap ErrBadToken.
func ParseToken(token string) (caFingerprint string, secret []byte, err error) {
	token = strings.TrimSpace(token)
	bad := func(why string) (string, []byte, error) {
		return "", nil, fmt.Errorf("%w: %s; copy the whole token printed by `ferry cluster token`", ErrBadToken, why)
	}
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return bad("it does not start with " + TokenPrefix)
	}
	buf, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return bad("it is not base64url")
	}
	n, k := binary.Uvarint(buf)
	if k <= 0 || n > maxFingerprintLen || uint64(len(buf)-k) < n {
		return bad("its CA fingerprint is cut short")
	}
	fp := string(buf[k : k+int(n)])
	if !strings.HasPrefix(fp, "SHA256:") {
		return bad("its CA fingerprint is not a SHA256 fingerprint")
	}
	secret = buf[k+int(n):]
	if len(secret) < MinSecretLen {
		return bad(fmt.Sprintf("its secret has %d bytes, want at least %d", len(secret), MinSecretLen))
	}
	return fp, secret, nil
}
