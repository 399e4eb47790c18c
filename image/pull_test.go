package image_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/store/storetest"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/pushers"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// fakePuller "pulls" by storing an image for the requested platform under
// the requested name.
type fakePuller struct {
	t       *testing.T
	s       storage.Store
	sys     *types.SystemContext
	changed bool
	err     error
	pulls   []string
}

func (f *fakePuller) Pull(ctx context.Context, name string, p platform.Platform) (string, error) {
	f.pulls = append(f.pulls, name+" "+p.Architecture)
	if f.err != nil {
		return "", f.err
	}
	img := platformImage(p.Architecture, p.Variant, "pulled "+p.Architecture)
	if _, err := pushers.Push(ctx, img, "containers-storage:"+strings.TrimPrefix(name, "docker://"), pushers.Options{Store: f.s, Sys: f.sys}); err != nil {
		f.t.Fatal(err)
	}
	return mustID(f.t, img), nil
}

func (f *fakePuller) Changed(context.Context, string, platform.Platform, []digest.Digest) (bool, error) {
	return f.changed, nil
}

func TestResolvePullPolicy(t *testing.T) {
	amd64 := platform.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := platform.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	tests := []struct {
		name    string
		policy  image.PullPolicy
		ref     string
		p       platform.Platform
		changed bool
		pullErr error
		pulls   int
		wantErr string
		wantArm bool // the resolved image is the arm64 one
		warn    bool // --platform-mismatch=warn
	}{
		{name: "missing, present", policy: image.PullMissing, ref: "quay.io/team/app:v1", p: amd64},
		{name: "missing, absent", policy: image.PullMissing, ref: "quay.io/team/new:v1", p: amd64, pulls: 1},
		{name: "never, absent", policy: image.PullNever, ref: "quay.io/team/new:v1", p: amd64, wantErr: "image not known locally"},
		{name: "always", policy: image.PullAlways, ref: "quay.io/team/app:v1", p: amd64, pulls: 1},
		{name: "newer, same", policy: image.PullNewer, ref: "quay.io/team/app:v1", p: amd64},
		{name: "newer, changed", policy: image.PullNewer, ref: "quay.io/team/app:v1", p: amd64, changed: true, pulls: 1},
		{name: "other platform", policy: image.PullMissing, ref: "quay.io/team/app:v1", p: arm64, pulls: 1, wantArm: true},
		{name: "other platform, pull fails", policy: image.PullMissing, ref: "quay.io/team/app:v1", p: arm64, pullErr: errors.New("offline"), pulls: 1,
			wantErr: "quay.io/team/app:v1 is for linux/amd64, not linux/arm64"},
		{name: "other platform, pull fails, warn", policy: image.PullMissing, ref: "quay.io/team/app:v1", p: arm64, pullErr: errors.New("offline"), pulls: 1, warn: true},
		{name: "localhost never pulled", policy: image.PullAlways, ref: "localhost/local:v1", p: amd64},
		{name: "short local name never pulled", policy: image.PullAlways, ref: "local:v1", p: amd64},
		{name: "localhost absent", policy: image.PullMissing, ref: "localhost/nothere", p: amd64, wantErr: "image not known locally"},
		{name: "docker transport, present", policy: image.PullMissing, ref: "docker://quay.io/team/app:v1", p: amd64},
		{name: "docker transport, absent", policy: image.PullMissing, ref: "docker://quay.io/team/new:v1", p: amd64, pulls: 1},
		{name: "pull fails", policy: image.PullMissing, ref: "quay.io/team/new:v1", p: amd64, pullErr: errors.New("registry down"), pulls: 1, wantErr: "registry down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := storetest.New(t)
			sys := storetest.Sys(t)
			for _, n := range []string{"quay.io/team/app:v1", "localhost/local:v1"} {
				if _, err := pushers.Push(ctx, platformImage("amd64", "", "local"), "containers-storage:"+n, pushers.Options{Store: s, Sys: sys}); err != nil {
					t.Fatal(err)
				}
			}
			f := &fakePuller{t: t, s: s, sys: sys, changed: tc.changed, err: tc.pullErr}
			r := &image.Resolver{Store: s, Sys: sys, Puller: f, Pull: tc.policy}
			if tc.warn {
				r.Mismatch = image.MismatchWarn
			}
			defer r.Close()
			img, err := r.Resolve(ctx, tc.ref, tc.p)
			if len(f.pulls) != tc.pulls {
				t.Errorf("pulls %v, want %d", f.pulls, tc.pulls)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if arm := img.Config.Architecture == "arm64"; arm != tc.wantArm {
				t.Errorf("resolved architecture %s", img.Config.Architecture)
			}
			// A second resolve in the same build pulls nothing more.
			if _, err := r.Resolve(ctx, tc.ref, tc.p); err != nil || len(f.pulls) != tc.pulls {
				t.Errorf("second resolve: %v, pulls %v", err, f.pulls)
			}
		})
	}
}

func TestParsePullPolicy(t *testing.T) {
	for in, want := range map[string]image.PullPolicy{
		"": image.PullMissing, "missing": image.PullMissing, "false": image.PullMissing,
		"always": image.PullAlways, "true": image.PullAlways, "never": image.PullNever,
		"newer": image.PullNewer, "ifnewer": image.PullNewer,
	} {
		if got, err := image.ParsePullPolicy(in); err != nil || got != want {
			t.Errorf("ParsePullPolicy(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := image.ParsePullPolicy("sometimes"); err == nil {
		t.Error("bad policy accepted")
	}
}

// A resolved image nobody changed keeps its config bytes (and so its ID),
// fields our types do not know included; a changed one gets canonical JSON.
func TestResolveKeepsRawConfig(t *testing.T) {
	w := newLayout(t)
	l := platformImage("amd64", "", "raw").Layers[0].(interface {
		image.Layer
		Blob() []byte
	})
	raw := []byte(`{"architecture": "amd64", "os": "linux", "x-unknown": {"kept": true},
 "rootfs": {"type": "layers", "diff_ids": ["` + l.DiffID().String() + `"]}, "config": {}}`)
	cfg := w.blob(raw)
	w.blob(l.Blob())
	man := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		cfg.String() + `","size":` + itoa(len(raw)) + `},"layers":[{"mediaType":"` + l.Descriptor().MediaType + `","digest":"` +
		l.Descriptor().Digest.String() + `","size":` + itoa(int(l.Descriptor().Size)) + `}]}`)
	md := w.blob(man)
	w.writeIndex(tagged(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(man))}, "v1"))
	r := &image.Resolver{Sys: storetest.Sys(t)}
	defer r.Close()
	img, err := r.Resolve(context.Background(), "oci:"+w.dir+":v1", platform.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := img.ID(); id != cfg {
		t.Errorf("unchanged image ID %s, want the source config digest %s", id, cfg)
	}
	changed := *img
	changed.Config.Config.Labels = map[string]string{"a": "b"}
	b, err := changed.ConfigJSON()
	if err != nil || strings.Contains(string(b), "x-unknown") || !strings.Contains(string(b), `"a":"b"`) {
		t.Errorf("changed config: %s %v", b, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
