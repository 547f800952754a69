package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxKeyLen is the longest key in bytes.
const MaxKeyLen = 1024

// ValidateKey reports whether key may be stored: 1 to MaxKeyLen bytes of
// UTF-8 with no NUL byte. The error wraps ErrInvalidKey.
func ValidateKey(key string) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: key is empty", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key is %d bytes, the limit is %d", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalidKey)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: key contains a NUL byte", ErrInvalidKey)
	}
	return nil
}

// ValidatePrefix is ValidateKey for prefixes, which may also be empty
// (meaning every key).
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return ValidateKey(prefix)
}
