// Package mapped gives back the memory that reading a memory-mapped file
// left resident in this process.
//
// bbolt maps its files and, when it opens one whose free list is not
// stored, walks every page to rebuild it; cairn also reads every page to
// verify a file before trusting it. Those walks leave the whole file
// resident in the process (counted in its RSS) although nothing reads most
// of it again; so do the pages that bbolt's commits write and later read
// back. Release drops those pages from the process's mappings: they stay
// in the kernel's page cache, and a later read maps them back in.
//go:build linux

package mapped

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Release drops the resident pages of every mapping of path in this
// process (madvise MADV_DONTNEED, safe on the shared, read-only mappings
// bbolt makes) and returns how many bytes of address space it covered. It
// does nothing, without error, where /proc/self/maps does not exist.
//
// The caller must keep the mapping in place during the call (for bbolt,
// hold a read transaction or keep writers out, as bbolt remaps only in
// one): were another mapping put at the same addresses meanwhile, its
// pages would be lost.
func Release(path string) (int64, error) {
	want, f, err := open(path, "/proc/self/maps")
	if f == nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Join(fields[5:], " ") != want || !strings.Contains(fields[1], "s") {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), syscall.MADV_DONTNEED); e != 0 {
			return total, e
		}
		total += int64(hi - lo)
	}
	return total, sc.Err()
}

// Resident returns how many bytes of this process's mappings of path are
// resident (the sum of their Rss in /proc/self/smaps); 0 where that file
// does not exist.
func Resident(path string) (int64, error) {
	want, f, err := open(path, "/proc/self/smaps")
	if f == nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // start-end perms offset dev inode path
			in = len(fields) >= 6 && strings.Join(fields[5:], " ") == want
			continue
		}
		if in && fields[0] == "Rss:" && len(fields) >= 2 {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, err
			}
			total += kb << 10
		}
	}
	return total, sc.Err()
}

// open resolves path (see resolve) and opens the /proc file proc. f is nil
// when proc cannot be read: err says why, or is nil where proc does not
// exist.
func open(path, proc string) (want string, f *os.File, err error) {
	if want, err = resolve(path); err != nil {
		return "", nil, err
	}
	f, err = os.Open(proc)
	if os.IsNotExist(err) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	return want, f, nil
}

// resolve returns path as /proc/self/maps names it: absolute, with
// symbolic links resolved (a data directory may sit behind one).
func resolve(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	return abs, nil
}
