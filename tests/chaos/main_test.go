//go:build linux

package chaos

import (
	"os"
	"testing"

	"github.com/cairn-kv/cairn/tests/cluster"
)

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }
