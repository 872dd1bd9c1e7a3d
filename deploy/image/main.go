// Command image builds the fleet container image without a container engine:
// it reads deploy/docker/Dockerfile (the one definition of the image: FROM
// scratch, COPY of static binaries, USER, ENTRYPOINT, CMD; anything else is
// refused), builds one image per architecture from the binaries of make
// dist-bin with go-containerregistry, and writes them as one multi-platform
// OCI archive (docker load, podman load, skopeo copy oci-archive:...).
// Every timestamp is SOURCE_DATE_EPOCH, so the same binaries give the same
// bytes. --verify reads an archive back and checks it against the Dockerfile.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	dockerfile := fs.String("dockerfile", "deploy/docker/Dockerfile", "the image's definition")
	dist := fs.String("dist", "dist", "where make dist-bin put the binaries (DIST/linux_ARCH/)")
	arches := fs.String("arch", "amd64,arm64", "architectures, comma-separated")
	tag := fs.String("tag", "", "image name and tag, e.g. driftsensor-fleet:0.3.0 (required)")
	out := fs.String("out", "", "the OCI archive to write (required)")
	verify := fs.String("verify", "", "read this archive back and check it against the Dockerfile instead of building")
	if err := fs.Parse(args); err != nil {
		return err
	}
	def, err := ParseDockerfile(*dockerfile)
	if err != nil {
		return err
	}
	archList := strings.Split(*arches, ",")
	if *verify != "" {
		if err := Verify(*verify, def, *tag, archList); err != nil {
			return err
		}
		fmt.Printf("image: %s: %s for %s, user %s, entrypoint %v: as %s says\n", *verify, *tag, strings.Join(archList, ", "), def.User, def.Entrypoint, *dockerfile)
		return nil
	}
	if *tag == "" || *out == "" {
		return fmt.Errorf("--tag and --out are required")
	}
	epoch, err := sourceDate()
	if err != nil {
		return err
	}
	digest, err := Build(def, BuildOptions{Dist: *dist, Arches: archList, Tag: *tag, Out: *out, Created: epoch})
	if err != nil {
		return err
	}
	fmt.Printf("image: %s %s (%s) -> %s\n", *tag, digest, strings.Join(archList, ", "), *out)
	return nil
}

// sourceDate is $SOURCE_DATE_EPOCH, the time every file and the image
// config are dated to; the Unix epoch when it is unset.
func sourceDate() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since the epoch", s)
	}
	return time.Unix(n, 0).UTC(), nil
}
