//go:build linux

package mapped

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// rssOf returns the resident KiB of this process's mappings of path.
func rssOf(t *testing.T, path string) int64 {
	t.Helper()
	n, err := Resident(path)
	if err != nil {
		t.Fatal(err)
	}
	return n >> 10
}

// Release drops a shared mapping's resident pages, and the data reads back
// unchanged afterwards; the file is named through a symbolic link, as a
// data directory may be, which /proc/self/maps resolves.
func TestReleaseDropsResidentPages(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "link", "data file") // a space, as paths may have
	const size = 8 << 20
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i / 4096)
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	var sum int
	for i := 0; i < size; i += 4096 {
		sum += int(m[i])
	}
	if sum < 0 {
		t.Fatal("unreachable")
	}
	if rss := rssOf(t, path); rss < size/1024/2 {
		t.Fatalf("after reading every page the mapping has %d KiB resident, want about %d", rss, size/1024)
	}
	n, err := Release(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Fatalf("covered %d bytes, want %d", n, size)
	}
	if rss := rssOf(t, path); rss > 64 {
		t.Fatalf("afterwards the mapping still has %d KiB resident", rss)
	}
	for i := 0; i < size; i += 4096 {
		if m[i] != byte(i/4096) {
			t.Fatalf("byte %d reads %d after Release, want %d", i, m[i], byte(i/4096))
		}
	}
	if n, err := Release(filepath.Join(t.TempDir(), "not mapped")); err != nil || n != 0 {
		t.Fatalf("an unmapped file = %d, %v; want 0, nil", n, err)
	}
}
