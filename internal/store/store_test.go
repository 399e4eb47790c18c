package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/image/imagetest"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/internal/store/storetest"
	"github.com/builder-dev/builder/pushers"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestNormalizeName(t *testing.T) {
	dg := "sha256:" + strings.Repeat("a", 64)
	tests := []struct{ in, want, wantErr string }{
		{in: "app", want: "localhost/app:latest"},
		{in: "app:v1", want: "localhost/app:v1"},
		{in: "team/app:v1", want: "localhost/team/app:v1"},
		{in: "localhost/app", want: "localhost/app:latest"},
		{in: "localhost:5000/app", want: "localhost:5000/app:latest"},
		{in: "quay.io/team/app", want: "quay.io/team/app:latest"},
		{in: "docker.io/alpine", want: "docker.io/library/alpine:latest"},
		{in: "docker.io/library/alpine:3", want: "docker.io/library/alpine:3"},
		{in: "app@" + dg, want: "localhost/app@" + dg},
		{in: "quay.io/app:v1@" + dg, want: "quay.io/app@" + dg},
		{in: "UPPER", wantErr: "invalid image name"},
		{in: "", wantErr: "invalid image name"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := store.NormalizeName(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("NormalizeName(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

type fixture struct {
	s          storage.Store
	so         store.Options
	app, other *image.Image
	appID      string
	otherID    string
	appDigest  digest.Digest
}

// newFixture stores two images: "app" as localhost/app:v1 (+ app:latest,
// quay.io/team/app:v2) in OCI format, and "other" as docker.io/library/busybox:latest
// in Docker format.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	s, so := storetest.New(t)
	sys := storetest.Sys(t)
	f := &fixture{s: s, so: so}
	f.app = imagetest.NewImage(ocispec.Platform{}, imagetest.MustLayer(image.Gzip, imagetest.File{Name: "a", Body: "app"}))
	f.other = imagetest.NewImage(ocispec.Platform{}, imagetest.MustLayer(image.Uncompressed, imagetest.File{Name: "b", Body: "other"}))
	var err error
	if f.appDigest, err = pushers.Push(ctx, f.app, "app:v1", pushers.Options{Store: s, Sys: sys, Tags: []string{"app", "quay.io/team/app:v2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := pushers.Push(ctx, f.other, "docker.io/busybox", pushers.Options{Store: s, Sys: sys, Format: image.FormatDocker}); err != nil {
		t.Fatal(err)
	}
	id := func(img *image.Image) string {
		d, err := img.ID()
		if err != nil {
			t.Fatal(err)
		}
		return d.Encoded()
	}
	f.appID, f.otherID = id(f.app), id(f.other)
	return f
}

func TestLookupImage(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name    string
		want    string // "app", "other" or "" for not found
		wantErr string
	}{
		{name: "app:v1", want: "app"},
		{name: "app", want: "app"},
		{name: "localhost/app:latest", want: "app"},
		{name: "team/app:v2", want: "app"},              // repository-suffix match
		{name: "quay.io/team/app:v2", want: "app"},      // fully qualified
		{name: "busybox", want: "other"},                // Docker Hub normalisation
		{name: "library/busybox:latest", want: "other"}, // suffix of docker.io/library/busybox
		{name: "docker.io/busybox", want: "other"},
		{name: f.appID, want: "app"},
		{name: "sha256:" + f.appID, want: "app"},
		{name: f.otherID[:12], want: "other"},
		{name: "app@" + f.appDigest.String(), want: "app"},
		{name: "app:v3", wantErr: "image not known: app:v3"},
		{name: "nothere", wantErr: "image not known: nothere"},
		{name: strings.Repeat("f", 64), wantErr: "image not known"},
		{name: "", wantErr: "empty image name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := store.LookupImage(f.s, tc.name)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.HasPrefix(tc.wantErr, "image not known") && !errors.Is(err, storage.ErrImageUnknown) {
					t.Errorf("errors.Is(%v, storage.ErrImageUnknown) is false", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"app": f.appID, "other": f.otherID}[tc.want]
			if img.ID != want {
				t.Errorf("%s -> %s, want %s (%s)", tc.name, img.ID, want, tc.want)
			}
		})
	}
}

func TestLookupAmbiguousSuffix(t *testing.T) {
	f := newFixture(t)
	if _, err := store.Tag(f.s, "busybox", "quay.io/x/app:v2"); err != nil {
		t.Fatal(err)
	}
	_, err := store.LookupImage(f.s, "app:v2")
	if err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("err = %v, want an ambiguity error", err)
	}
}

func TestListTagInspect(t *testing.T) {
	f := newFixture(t)
	list, err := store.List(f.s)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("List: %+v", list)
	}
	byID := map[string]store.Summary{}
	for _, s := range list {
		byID[s.ID] = s
		if s.Size <= 0 || s.Created.IsZero() || s.Digest == "" {
			t.Errorf("summary %+v", s)
		}
	}
	if got := byID[f.otherID].Names; !slices.Equal(got, []string{"docker.io/library/busybox:latest"}) {
		t.Errorf("other names %v", got)
	}
	if !byID[f.appID].Created.Equal(imagetest.Epoch) {
		t.Errorf("created %v, want the config's %v", byID[f.appID].Created, imagetest.Epoch)
	}

	names, err := store.Tag(f.s, "busybox", "mybox:1", "registry.example.com:5000/box")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"localhost/mybox:1", "registry.example.com:5000/box:latest"}; !slices.Equal(names, want) {
		t.Errorf("Tag returned %v, want %v", names, want)
	}
	if img, err := store.LookupImage(f.s, "mybox:1"); err != nil || img.ID != f.otherID {
		t.Errorf("mybox:1 -> %v, %v", img, err)
	}
	if _, err := store.Tag(f.s, "busybox", "x@sha256:"+strings.Repeat("b", 64)); err == nil {
		t.Error("tagging with a digest should fail")
	}
	if _, err := store.Tag(f.s, "nothere", "y"); !errors.Is(err, storage.ErrImageUnknown) {
		t.Errorf("tag of unknown image: %v", err)
	}

	info, err := store.Inspect(f.s, "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	wantMan, wantCfg, _ := f.app.Manifest(image.FormatOCI)
	if info.ID != f.appID || info.Digest != digest.FromBytes(wantMan) || info.ManifestType != ocispec.MediaTypeImageManifest {
		t.Errorf("inspect: id %s digest %s type %s", info.ID, info.Digest, info.ManifestType)
	}
	if string(info.Manifest) != string(wantMan) {
		t.Errorf("manifest %s, want %s", info.Manifest, wantMan)
	}
	var wantConfig dockerspec.DockerOCIImage
	if err := json.Unmarshal(wantCfg, &wantConfig); err != nil {
		t.Fatal(err)
	}
	if info.Config.Config.Healthcheck == nil || !slices.Equal(info.Config.Config.Shell, wantConfig.Config.Shell) ||
		!slices.Equal(info.Config.RootFS.DiffIDs, wantConfig.RootFS.DiffIDs) {
		t.Errorf("config %+v", info.Config)
	}
	out, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"Id":`, `"Names":`, `"Digest":`, `"ManifestType":`, `"Manifest":{`, `"Config":{`} {
		if !strings.Contains(string(out), k) {
			t.Errorf("inspect JSON lacks %s: %s", k, out)
		}
	}

	// podman reads the same store and sees the same IDs and names.
	podman := exec.Command("podman", "--root", f.so.Root, "--runroot", f.so.RunRoot, "--storage-driver", "vfs",
		"images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
	pout, err := podman.CombinedOutput()
	if err != nil {
		t.Fatalf("podman images: %v\n%s", err, pout)
	}
	for _, want := range []string{"sha256:" + f.appID + " localhost/app:v1", "sha256:" + f.otherID + " localhost/mybox:1"} {
		if !strings.Contains(string(pout), want) {
			t.Errorf("podman images lacks %q:\n%s", want, pout)
		}
	}
}

func TestRemove(t *testing.T) {
	f := newFixture(t)

	// A name of a multi-name image: untag only.
	r, err := store.Remove(f.s, "app:v1", false)
	if err != nil || r.Deleted != "" || !slices.Equal(r.Untagged, []string{"localhost/app:v1"}) {
		t.Fatalf("Remove(app:v1) = %+v, %v", r, err)
	}
	if _, err := store.LookupImage(f.s, "app:v1"); !errors.Is(err, storage.ErrImageUnknown) {
		t.Errorf("app:v1 still resolves: %v", err)
	}

	// By ID with two names left: needs force.
	if _, err := store.Remove(f.s, f.appID[:12], false); err == nil || !strings.Contains(err.Error(), "several names") {
		t.Fatalf("remove by ID: %v", err)
	}

	// In use by a container: needs force, which removes the container.
	img, err := store.LookupImage(f.s, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := f.s.CreateContainer("", []string{"ctr"}, img.ID, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Remove(f.s, "busybox", false); !errors.Is(err, storage.ErrImageUsedByContainer) {
		t.Fatalf("remove of used image: %v", err)
	}
	r, err = store.Remove(f.s, "busybox", true)
	if err != nil || r.Deleted != f.otherID || !slices.Equal(r.Untagged, []string{"docker.io/library/busybox:latest"}) {
		t.Fatalf("forced remove = %+v, %v", r, err)
	}
	if _, err := f.s.Container(ctr.ID); err == nil {
		t.Error("container survived a forced rmi")
	}

	// Forced by ID: all names go.
	r, err = store.Remove(f.s, f.appID, true)
	if err != nil || r.Deleted != f.appID || len(r.Untagged) != 2 {
		t.Fatalf("forced remove by ID = %+v, %v", r, err)
	}
	if list, err := store.List(f.s); err != nil || len(list) != 0 {
		t.Errorf("images left: %+v, %v", list, err)
	}
	if layers, err := f.s.Layers(); err != nil || len(layers) != 0 {
		t.Errorf("layers left: %d, %v", len(layers), err)
	}
	if _, err := store.Remove(f.s, "app", false); err == nil || err.Error() != "image not known: app" {
		t.Errorf("remove of unknown image: %v", err)
	}
}
