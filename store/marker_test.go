package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDirtyMarker covers the marker a NoSync store keeps beside its file
// so that a machine crash with unsynced writes is noticed at the next
// Open.
func TestDirtyMarker(t *testing.T) {
	boot := bootID()
	if boot == "" {
		t.Skip("no boot ID on this system")
	}
	open := func(t *testing.T, path string, noSync bool) (*Store, error) {
		cfg := DefaultConfig(path)
		cfg.NoSync = noSync
		cfg.Logger = testLogger(t)
		s, err := Open(cfg)
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}
	// writeStore leaves a store file at path holding key "a".
	writeStore := func(t *testing.T, path string) {
		s := mustOpenStoreAt(t, path)
		s.put("a", "1")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("marker while open", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		s, err := open(t, path, true)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path + dirtySuffix)
		if err != nil || string(b) != boot {
			t.Fatalf("marker = %q, %v; want the boot ID", b, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path + dirtySuffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("marker left after Close: %v", err)
		}
	})
	t.Run("no marker with sync", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		if _, err := open(t, path, false); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path + dirtySuffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a syncing store wrote a marker: %v", err)
		}
	})
	t.Run("process crash", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		writeStore(t, path)
		os.WriteFile(path+dirtySuffix, []byte(boot), 0o600)
		s, err := open(t, path, true)
		if err != nil {
			t.Fatalf("Open after a process crash in this boot: %v", err)
		}
		if _, _, err := s.Get("a"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("machine crash", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		writeStore(t, path)
		os.WriteFile(path+dirtySuffix, []byte("an-earlier-boot"), 0o600)
		if _, err := open(t, path, true); !errors.Is(err, ErrUnclean) {
			t.Fatalf("Open after a machine crash = %v, want ErrUnclean", err)
		}
		// Remove clears the way for a rebuild from the log.
		if err := Remove(path); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path, path + dirtySuffix} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s left after Remove: %v", p, err)
			}
		}
		if err := Remove(path); err != nil {
			t.Fatalf("Remove of nothing: %v", err)
		}
		if _, err := open(t, path, true); err != nil {
			t.Fatalf("Open after Remove: %v", err)
		}
	})
	t.Run("machine crash opened with sync", func(t *testing.T) {
		// The file was written without fsync before the machine went down;
		// turning NoSync off for the next start does not make it intact.
		path := filepath.Join(t.TempDir(), "db")
		writeStore(t, path)
		os.WriteFile(path+dirtySuffix, []byte("an-earlier-boot"), 0o600)
		if _, err := open(t, path, false); !errors.Is(err, ErrUnclean) {
			t.Errorf("BUG: Open with NoSync=false ignores the marker of an unsynced machine crash: err = %v, want ErrUnclean", err)
		}
	})
	t.Run("marker without file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		os.WriteFile(path+dirtySuffix, []byte("an-earlier-boot"), 0o600)
		if _, err := open(t, path, true); err != nil {
			t.Fatalf("Open of a fresh path with a stale marker: %v", err)
		}
	})
}
