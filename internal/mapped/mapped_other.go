//go:build !linux

package mapped

// Release does nothing on this system.
func Release(path string) (int64, error) { return 0, nil }

// Resident returns 0 on this system.
func Resident(path string) (int64, error) { return 0, nil }
