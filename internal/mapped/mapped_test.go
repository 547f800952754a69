//go:build linux

package mapped

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// rssOf sums the Rss of this process's mappings of path, in KiB.
func rssOf(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && strings.Join(fields[5:], " ") == path
			continue
		}
		if in && len(fields) >= 2 && fields[0] == "Rss:" {
			n, _ := strconv.ParseInt(fields[1], 10, 64)
			total += n
		}
	}
	return total
}

// Release drops a shared mapping's resident pages, and the data reads back
// unchanged afterwards.
func TestReleaseDropsResidentPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data file") // a space, as paths may have
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
		t.Fatalf("Release covered %d bytes, want %d", n, size)
	}
	if rss := rssOf(t, path); rss > 64 {
		t.Fatalf("after Release the mapping still has %d KiB resident", rss)
	}
	for i := 0; i < size; i += 4096 {
		if m[i] != byte(i/4096) {
			t.Fatalf("byte %d reads %d after Release, want %d", i, m[i], byte(i/4096))
		}
	}
	if n, err := Release(filepath.Join(t.TempDir(), "not mapped")); err != nil || n != 0 {
		t.Fatalf("Release of an unmapped file = %d, %v; want 0, nil", n, err)
	}
}
