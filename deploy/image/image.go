package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// Annotations naming the image in the archive: the OCI one (podman,
// skopeo) and containerd's (docker load), which wants a full reference.
const (
	refName       = "org.opencontainers.image.ref.name"
	containerdRef = "io.containerd.image.name"
)

// BuildOptions say what to build and where.
type BuildOptions struct {
	Dist    string   // DIST of make dist-bin: DIST/linux_ARCH/ holds the binaries
	Arches  []string // GOARCH names
	Tag     string
	Out     string
	Created time.Time // every timestamp
}

// Build writes the multi-platform OCI archive and returns the index digest.
func Build(def *Def, o BuildOptions) (v1.Hash, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range o.Arches {
		img, err := archImage(def, o, arch)
		if err != nil {
			return v1.Hash{}, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	dir, err := os.MkdirTemp("", "driftsensor-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(dir)
	l, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := l.AppendIndex(idx, layout.WithAnnotations(map[string]string{refName: o.Tag, containerdRef: fullRef(o.Tag)})); err != nil {
		return v1.Hash{}, err
	}
	return digest, tarDir(dir, o.Out, o.Created)
}

// fullRef is the name docker load gives the image: a bare name is docker.io/library/NAME.
func fullRef(tag string) string {
	first, _, found := strings.Cut(tag, "/")
	switch {
	case !found:
		return "docker.io/library/" + tag
	case strings.ContainsAny(first, ".:") || first == "localhost":
		return tag
	}
	return "docker.io/" + tag
}

// archImage is one architecture's image: one layer with the Dockerfile's
// files, the Dockerfile's user, entrypoint and command.
func archImage(def *Def, o BuildOptions, arch string) (v1.Image, error) {
	files, err := def.Files(map[string]string{"TARGETARCH": arch, "DIST": o.Dist})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		data, err := os.ReadFile(files[name])
		if err != nil {
			return nil, fmt.Errorf("%w (run make dist-bin first)", err)
		}
		// Owned by root, not writable by the image's user: it runs them only.
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(name, "/"), Mode: 0o755, Size: int64(len(data)),
			ModTime: o.Created, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{User: def.User, Entrypoint: def.Entrypoint, Cmd: def.Cmd}
	cf.History = []v1.History{{Created: cf.Created, CreatedBy: "deploy/image from deploy/docker/Dockerfile: COPY " + strings.Join(names, " ")}}
	return mutate.ConfigFile(img, cf)
}

// tarDir writes dir as a tar archive: sorted, owned by root, dated to t.
func tarDir(dir, out string, t time.Time) error {
	var paths []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			paths = append(paths, p)
		}
		return err
	}); err != nil {
		return err
	}
	sort.Strings(paths)
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(out + ".tmp")
	tw := tar.NewWriter(f)
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: t, Mode: 0o644, Format: tar.FormatPAX}
		if st.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// elfMachine is the ELF machine each architecture's binaries must be for.
var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// Verify reads an archive back: a valid OCI layout (every digest and size
// checked by go-containerregistry's validate), named tag, one image per
// architecture with the Dockerfile's user (not root), entrypoint and
// command, and exactly the Dockerfile's files: root-owned, executable,
// static ELF binaries for that architecture.
func Verify(archive string, def *Def, tag string, arches []string) error {
	dir, err := os.MkdirTemp("", "driftsensor-image-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := untar(archive, dir); err != nil {
		return err
	}
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return fmt.Errorf("%s: not an OCI layout: %w", archive, err)
	}
	rm, err := root.IndexManifest()
	if err != nil {
		return err
	}
	if len(rm.Manifests) != 1 || rm.Manifests[0].Annotations[refName] != tag || rm.Manifests[0].Annotations[containerdRef] != fullRef(tag) {
		return fmt.Errorf("%s: want one image index named %s, got %+v", archive, tag, rm.Manifests)
	}
	idx, err := root.ImageIndex(rm.Manifests[0].Digest)
	if err != nil {
		return err
	}
	if err := validate.Index(idx); err != nil {
		return fmt.Errorf("%s: %w", archive, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var got []string
	for _, m := range im.Manifests {
		if m.Platform == nil || m.Platform.OS != "linux" {
			return fmt.Errorf("%s: manifest %s without a linux platform", archive, m.Digest)
		}
		arch := m.Platform.Architecture
		got = append(got, arch)
		img, err := idx.Image(m.Digest)
		if err != nil {
			return err
		}
		if err := verifyImage(img, def, arch); err != nil {
			return fmt.Errorf("%s: linux/%s: %w", archive, arch, err)
		}
	}
	if !slices.Equal(got, arches) {
		return fmt.Errorf("%s: architectures %v, want %v", archive, got, arches)
	}
	return nil
}

func verifyImage(img v1.Image, def *Def, arch string) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	c := cf.Config
	user, _, _ := strings.Cut(c.User, ":")
	switch {
	case cf.OS != "linux" || cf.Architecture != arch:
		return fmt.Errorf("config says %s/%s", cf.OS, cf.Architecture)
	case user == "" || user == "0" || user == "root":
		return fmt.Errorf("runs as root (user %q)", c.User)
	case c.User != def.User || !slices.Equal(c.Entrypoint, def.Entrypoint) || !slices.Equal(c.Cmd, def.Cmd):
		return fmt.Errorf("user %q entrypoint %q cmd %q; the Dockerfile says %q %q %q", c.User, c.Entrypoint, c.Cmd, def.User, def.Entrypoint, def.Cmd)
	}
	want, err := def.Files(map[string]string{"TARGETARCH": arch})
	if err != nil {
		return err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := "/" + strings.TrimPrefix(hdr.Name, "/")
		if _, ok := want[name]; !ok {
			return fmt.Errorf("holds %s, which the Dockerfile does not copy", name)
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Mode&0o777 != 0o755 || hdr.Uid != 0 || hdr.Gid != 0 {
			return fmt.Errorf("%s: type %c mode %o owner %d:%d, want a root-owned file, mode 755", name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if err := staticELF(data, arch); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		seen[name] = true
	}
	for name := range want {
		if !seen[name] {
			return fmt.Errorf("lacks %s", name)
		}
	}
	if ep := def.Entrypoint[0]; !seen[ep] {
		return fmt.Errorf("entrypoint %s is not in the image", ep)
	}
	return nil
}

// staticELF checks a binary is an ELF executable for arch with no program
// interpreter: nothing in a scratch image could load a dynamic one.
func staticELF(data []byte, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	if f.Machine != elfMachine[arch] {
		return fmt.Errorf("built for %s, want %s (%s)", f.Machine, elfMachine[arch], arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked: a scratch image has no loader (build with CGO_ENABLED=0)")
		}
	}
	return nil
}

// untar extracts an archive of regular files and directories into dir.
func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			return fmt.Errorf("%s: entry %q leaves the archive", archive, hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: entry %q of type %c", archive, hdr.Name, hdr.Typeflag)
		}
	}
}
