package act

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestTrueELF: the exec payload is a valid x86-64 executable that exits 0.
func TestTrueELF(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(TrueELF()))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || len(f.Progs) != 1 {
		t.Fatalf("machine %v type %v %d program headers", f.Machine, f.Type, len(f.Progs))
	}
	p := filepath.Join(t.TempDir(), "true")
	if err := os.WriteFile(p, TrueELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(p).CombinedOutput(); err != nil {
		t.Fatalf("run it: %v %s", err, out)
	}
}
