package images

import (
	"fmt"
	"regexp"
	"sync"
)

var nameRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)
})

// ValidateName checks an image name: a lowercase letter or digit, then up
// to 62 lowercase letters, digits, '.', '_' or '-', optionally followed by
// ":TAG" (a letter, digit or '_', then up to 127 of those, '.' or '-').
// Names are taken literally: "app" and "app:latest" are two names.
func ValidateName(name string) error {
	if !nameRE().MatchString(name) {
		return fmt.Errorf("%w: %q: use lowercase letters, digits, '.', '_' and '-' "+
			"(up to 63, starting with a letter or digit), optionally followed by :TAG", ErrInvalidName, name)
	}
	return nil
}
