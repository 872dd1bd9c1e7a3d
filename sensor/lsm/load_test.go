package lsm

import (
	"testing"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

func TestLoadAttachDetach(t *testing.T) {
	requireLSM(t)
	cg := testenv.NewCgroup(t)
	root, _ := sysfs.CgroupRoot()
	b, err := Load(backend.Options{Scope: []string{cg.Path}, CgroupRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hooks missing on this kernel: %v", b.Missing)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
