package store_test

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/internal/store/storetest"
	"github.com/builder-dev/builder/platform"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"
)

// desc is an index entry for a made-up instance.
func desc(name, os, arch, variant string) ocispec.Descriptor {
	d := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromString(name),
		Size:      int64(100 + len(name)),
	}
	if os != "" || arch != "" {
		d.Platform = &ocispec.Platform{OS: os, Architecture: arch, Variant: variant}
	}
	return d
}

func ref(name string) string {
	return "docker://registry.example.com/app@" + digest.FromString(name).String()
}

func TestManifestListSaveLoad(t *testing.T) {
	full := desc("full", "windows", "amd64", "")
	full.Platform.OSVersion = "10.0.17763.1"
	full.Platform.OSFeatures = []string{"win32k"}
	full.Annotations = map[string]string{"org.example.note": "n"}
	tests := []struct {
		name      string
		mediaType string
		descs     []ocispec.Descriptor
		// want is what LoadList gives back; nil: descs.
		want []ocispec.Descriptor
	}{
		{name: "empty oci", mediaType: ocispec.MediaTypeImageIndex},
		{name: "empty docker", mediaType: manifest.DockerV2ListMediaType},
		{name: "default is oci", mediaType: ""},
		{
			name: "oci two platforms", mediaType: ocispec.MediaTypeImageIndex,
			descs: []ocispec.Descriptor{desc("a", "linux", "amd64", ""), desc("b", "linux", "arm64", "v8")},
		},
		{
			name: "oci annotations and os fields", mediaType: ocispec.MediaTypeImageIndex,
			descs: []ocispec.Descriptor{full, desc("np", "", "", "")},
		},
		{
			// A Docker list has no annotations: they are not saved.
			name: "docker drops annotations", mediaType: manifest.DockerV2ListMediaType,
			descs: []ocispec.Descriptor{full, desc("a", "linux", "amd64", "")},
			want: func() []ocispec.Descriptor {
				f := full
				f.Annotations = nil
				return []ocispec.Descriptor{f, desc("a", "linux", "amd64", "")}
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := storetest.New(t)
			l := store.NewList(tc.mediaType)
			for i, d := range tc.descs {
				l.Add(d, ref(string(rune('a'+i))))
			}
			wantInstances := maps.Clone(l.Instances)
			id, err := l.Save(s, "localhost/list:v1")
			if err != nil {
				t.Fatal(err)
			}
			if id == "" || l.ID != id || !slices.Equal(l.Names, []string{"localhost/list:v1"}) {
				t.Fatalf("Save: id %q, list %q %v", id, l.ID, l.Names)
			}
			for _, name := range []string{"localhost/list:v1", "list:v1", id, id[:12]} {
				got, err := store.LoadList(s, name)
				if err != nil {
					t.Fatalf("LoadList(%s): %v", name, err)
				}
				wantMT := tc.mediaType
				if wantMT == "" {
					wantMT = ocispec.MediaTypeImageIndex
				}
				want := tc.want
				if want == nil {
					want = tc.descs
				}
				if got.ID != id || got.MediaType != wantMT || !slices.Equal(got.Names, []string{"localhost/list:v1"}) {
					t.Errorf("LoadList(%s): id %s, type %s, names %v", name, got.ID, got.MediaType, got.Names)
				}
				if len(want) == 0 && len(got.Index.Manifests) != 0 || len(want) > 0 && !reflect.DeepEqual(got.Index.Manifests, want) {
					t.Errorf("LoadList(%s) manifests:\n got %+v\nwant %+v", name, got.Index.Manifests, want)
				}
				if !maps.Equal(got.Instances, wantInstances) {
					t.Errorf("LoadList(%s) instances %v, want %v", name, got.Instances, wantInstances)
				}
			}
			// Stored as podman stores lists: the list as the "manifest"
			// item, instances.json with "" naming the list itself.
			img, err := s.Image(id)
			if err != nil {
				t.Fatal(err)
			}
			if !store.IsList(s, img) {
				t.Error("IsList is false for a saved list")
			}
			man, err := s.ImageBigData(id, storage.ImageDigestBigDataKey)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := l.Bytes()
			if string(man) != string(b) {
				t.Errorf("stored manifest %s, Bytes %s", man, b)
			}
			if _, err := manifest.ListFromBlob(man, manifest.GuessMIMEType(man)); err != nil {
				t.Errorf("containers/image cannot read the list: %v\n%s", err, man)
			}
			inst, err := s.ImageBigData(id, "instances.json")
			if err != nil {
				t.Fatal(err)
			}
			var refs map[string]string
			if err := json.Unmarshal(inst, &refs); err != nil || refs[""] != id || len(refs) != len(wantInstances)+1 {
				t.Errorf("instances.json %s: %v", inst, err)
			}
		})
	}
}

func TestManifestListLoadErrors(t *testing.T) {
	f := newFixture(t)
	if _, err := store.LoadList(f.s, "app:v1"); !errors.Is(err, store.ErrNotList) {
		t.Errorf("LoadList of an image: %v, want ErrNotList", err)
	}
	if _, err := store.LoadList(f.s, "nothere"); !errors.Is(err, storage.ErrImageUnknown) {
		t.Errorf("LoadList of no image: %v, want ErrImageUnknown", err)
	}
	// A list saved over an existing image's ID keeps that image's names
	// and a second Save changes the same image.
	l := store.NewList("")
	l.Add(desc("a", "linux", "amd64", ""), ref("a"))
	id, err := l.Save(f.s, "localhost/l:1")
	if err != nil {
		t.Fatal(err)
	}
	l.Add(desc("b", "linux", "arm64", ""), ref("b"))
	if id2, err := l.Save(f.s, "localhost/l:2"); err != nil || id2 != id {
		t.Fatalf("second Save: %s, %v (first %s)", id2, err, id)
	}
	got, err := store.LoadList(f.s, "localhost/l:1")
	if err != nil || len(got.Index.Manifests) != 2 || !slices.Equal(slices.Sorted(slices.Values(got.Names)), []string{"localhost/l:1", "localhost/l:2"}) {
		t.Fatalf("after second Save: %+v, %v", got, err)
	}
}

func TestManifestListChoose(t *testing.T) {
	list := []ocispec.Descriptor{
		desc("noplatform", "", "", ""),
		desc("amd64", "linux", "amd64", ""),
		desc("armv6", "linux", "arm", "v6"),
		desc("armv7", "linux", "arm", "v7"),
		desc("arm64v8", "linux", "aarch64", "v8"), // normal form: linux/arm64
		desc("arm64", "linux", "arm64", ""),
		desc("arm64v82", "linux", "arm64", "v8.2"),
		desc("win", "windows", "amd64", ""),
	}
	onlyArm64 := []ocispec.Descriptor{desc("arm64", "linux", "arm64", "")}
	tests := []struct {
		name  string
		descs []ocispec.Descriptor
		want  platform.Platform
		found string // name of the instance chosen, "" for none
	}{
		{"exact", list, platform.Platform{OS: "linux", Architecture: "amd64"}, "amd64"},
		{"exact variant over an earlier one", list, platform.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, "armv7"},
		{"bare arm is arm/v7", list, platform.Platform{OS: "linux", Architecture: "arm"}, "armv7"},
		{"x86_64 alias", list, platform.Platform{OS: "linux", Architecture: "x86_64"}, "amd64"},
		{"arm64/v8 is arm64: first of equals", list, platform.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "arm64v8"},
		{"exact minor variant", list, platform.Platform{OS: "linux", Architecture: "arm64", Variant: "v8.2"}, "arm64v82"},
		{"variant wanted, none had", onlyArm64, platform.Platform{OS: "linux", Architecture: "arm64", Variant: "v8.2"}, "arm64"},
		{"other variant named", list, platform.Platform{OS: "linux", Architecture: "arm", Variant: "v5"}, ""},
		{"other os", list, platform.Platform{OS: "windows", Architecture: "amd64"}, "win"},
		{"missing arch", list, platform.Platform{OS: "linux", Architecture: "s390x"}, ""},
		{"empty list", nil, platform.Platform{OS: "linux", Architecture: "amd64"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := store.NewList("")
			for _, d := range tc.descs {
				l.Add(d, "")
			}
			got, ok := l.Choose(tc.want)
			if tc.found == "" {
				if ok {
					t.Fatalf("Choose(%s) = %s, want none", tc.want, got.Digest)
				}
				return
			}
			if !ok || got.Digest != digest.FromString(tc.found) {
				t.Fatalf("Choose(%s) = %s %v, want %s", tc.want, got.Digest, ok, tc.found)
			}
		})
	}
}

func TestManifestListReplacePlatform(t *testing.T) {
	names := func(l *store.ManifestList) []string {
		var out []string
		for _, m := range l.Index.Manifests {
			for _, n := range []string{"amd", "arm", "arm2", "armv8", "s390", "np", "np2", "amd-as-arm"} {
				if m.Digest == digest.FromString(n) {
					out = append(out, n)
				}
			}
		}
		return out
	}
	amdAsArm := desc("amd", "linux", "arm64", "")
	tests := []struct {
		name      string
		add       ocispec.Descriptor
		want      []string // instances after, in order
		wantGone  string   // an instance whose reference must be gone
		wantPlats int      // instances with a platform
	}{
		{"same platform replaces", desc("arm2", "linux", "arm64", ""), []string{"amd", "np", "arm2"}, "arm", 2},
		{"normal forms are one platform", desc("armv8", "linux", "aarch64", "v8"), []string{"amd", "np", "armv8"}, "arm", 2},
		{"new platform appends", desc("s390", "linux", "s390x", ""), []string{"amd", "arm", "np", "s390"}, "", 3},
		{"same digest replaced in place, others of its platform go", amdAsArm, []string{"amd", "np"}, "arm", 1},
		{"no platform: only added", desc("np2", "", "", ""), []string{"amd", "arm", "np", "np2"}, "", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := store.NewList("")
			l.Add(desc("amd", "linux", "amd64", ""), ref("amd"))
			l.Add(desc("arm", "linux", "arm64", ""), ref("arm"))
			l.Add(desc("np", "", "", ""), ref("np"))
			l.ReplacePlatform(tc.add, "containers-storage:new")
			if got := names(l); !slices.Equal(got, tc.want) {
				t.Errorf("instances %v, want %v", got, tc.want)
			}
			if l.Instances[tc.add.Digest] != "containers-storage:new" {
				t.Errorf("reference of the new instance: %q", l.Instances[tc.add.Digest])
			}
			if tc.wantGone != "" {
				if _, ok := l.Instances[digest.FromString(tc.wantGone)]; ok {
					t.Errorf("reference of replaced %s kept", tc.wantGone)
				}
			}
			if len(l.Instances) != len(l.Index.Manifests) {
				t.Errorf("%d references for %d instances", len(l.Instances), len(l.Index.Manifests))
			}
			if got := len(l.Platforms()); got != tc.wantPlats {
				t.Errorf("Platforms() has %d, want %d", got, tc.wantPlats)
			}
		})
	}
}

func TestManifestListRemove(t *testing.T) {
	tests := []struct {
		name   string
		remove digest.Digest
		ok     bool
		left   int
	}{
		{"first", digest.FromString("a"), true, 2},
		{"last", digest.FromString("c"), true, 2},
		{"absent", digest.FromString("zzz"), false, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := storetest.New(t)
			l := store.NewList("")
			for _, n := range []string{"a", "b", "c"} {
				l.Add(desc(n, "linux", "amd64", ""), ref(n))
			}
			if _, err := l.Save(s, "localhost/rm:latest"); err != nil {
				t.Fatal(err)
			}
			if got := l.Remove(tc.remove); got != tc.ok {
				t.Fatalf("Remove = %v, want %v", got, tc.ok)
			}
			if _, err := l.Save(s); err != nil {
				t.Fatal(err)
			}
			got, err := store.LoadList(s, "localhost/rm:latest")
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Index.Manifests) != tc.left || len(got.Instances) != tc.left {
				t.Errorf("%d instances, %d references left; want %d", len(got.Index.Manifests), len(got.Instances), tc.left)
			}
			for _, m := range got.Index.Manifests {
				if m.Digest == tc.remove {
					t.Errorf("%s still listed", tc.remove)
				}
			}
		})
	}
}

// A Docker manifest list keeps its type and its entries' platform
// features (kept as FeaturesAnnotation in memory) through Save and
// LoadList; Bytes does not change the list it renders.
func TestManifestListDockerRoundTrip(t *testing.T) {
	s, _ := storetest.New(t)
	l := store.NewList(manifest.DockerV2ListMediaType)
	feat := desc("feat", "linux", "amd64", "")
	feat.MediaType = manifest.DockerV2Schema2MediaType
	feat.Platform.OSFeatures = []string{"osf"}
	feat.Annotations = map[string]string{store.FeaturesAnnotation: "sse4,avx", "dropped": "x"}
	plain := desc("plain", "linux", "arm64", "v8.2")
	plain.MediaType = manifest.DockerV2Schema2MediaType
	l.Add(feat, ref("feat"))
	l.Add(plain, ref("plain"))
	b1, err := l.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if l.Index.Manifests[0].Annotations["dropped"] != "x" {
		t.Error("Bytes changed the list's annotations")
	}
	if _, err := l.Save(s, "localhost/dl:latest"); err != nil {
		t.Fatal(err)
	}
	man, err := s.ImageBigData(l.ID, storage.ImageDigestBigDataKey)
	if err != nil {
		t.Fatal(err)
	}
	if mt := manifest.GuessMIMEType(man); mt != manifest.DockerV2ListMediaType {
		t.Fatalf("stored as %s:\n%s", mt, man)
	}
	if strings.Contains(string(man), "annotations") {
		t.Errorf("a Docker list with annotations:\n%s", man)
	}
	dl, err := manifest.Schema2ListFromManifest(man)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl.Manifests) != 2 || !slices.Equal(dl.Manifests[0].Platform.Features, []string{"sse4", "avx"}) ||
		!slices.Equal(dl.Manifests[0].Platform.OSFeatures, []string{"osf"}) || dl.Manifests[1].Platform.Variant != "v8.2" ||
		dl.Manifests[1].Platform.Features != nil {
		t.Errorf("Docker list entries %+v", dl.Manifests)
	}

	got, err := store.LoadList(s, "localhost/dl:latest")
	if err != nil {
		t.Fatal(err)
	}
	if got.MediaType != manifest.DockerV2ListMediaType {
		t.Errorf("loaded as %s", got.MediaType)
	}
	if want := map[string]string{store.FeaturesAnnotation: "sse4,avx"}; !maps.Equal(got.Index.Manifests[0].Annotations, want) {
		t.Errorf("loaded annotations %v, want %v", got.Index.Manifests[0].Annotations, want)
	}
	if got.Index.Manifests[1].Annotations != nil {
		t.Errorf("loaded annotations of the plain entry: %v", got.Index.Manifests[1].Annotations)
	}
	b2, err := got.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if string(b1) != string(man) || string(b2) != string(man) {
		t.Errorf("Bytes before save, stored, after load differ:\n%s\n%s\n%s", b1, man, b2)
	}
}

// Instances found in the store: by the reference the list records, else by
// manifest digest; LocalRef is the reference buildah records.
func TestManifestListInstanceImage(t *testing.T) {
	f := newFixture(t)
	l := store.NewList("")
	r, err := store.LocalRef(f.s, f.appID)
	if err != nil {
		t.Fatal(err)
	}
	if want := "@" + f.appID; !strings.HasPrefix(r, "containers-storage:[vfs@") || !strings.HasSuffix(r, want) {
		t.Errorf("LocalRef = %q", r)
	}
	l.Add(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: f.appDigest, Size: 1}, r)
	l.Add(desc("remote", "linux", "amd64", ""), ref("remote"))
	if img, err := store.InstanceImage(f.s, l, f.appDigest); err != nil || img == nil || img.ID != f.appID {
		t.Errorf("InstanceImage(app) = %v, %v", img, err)
	}
	delete(l.Instances, f.appDigest) // found by digest alone
	if img, err := store.InstanceImage(f.s, l, f.appDigest); err != nil || img == nil || img.ID != f.appID {
		t.Errorf("InstanceImage(app) by digest = %v, %v", img, err)
	}
	if img, err := store.InstanceImage(f.s, l, digest.FromString("remote")); err != nil || img != nil {
		t.Errorf("InstanceImage(remote) = %v, %v; want none", img, err)
	}
}
