package executor

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// referenceDigest is the entry framing as first written (fmt per field):
// cache keys must not change when the framing code does.
func referenceDigest(en *hashEntry, portable, keepOwner bool) digest.Digest {
	h := sha256.New()
	field := func(h hash.Hash, s string) { fmt.Fprintf(h, "%d:%s", len(s), s) }
	field(h, en.name)
	field(h, en.fi.Mode().Type().String())
	mode := en.fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if portable {
		mode = portableMode(en.fi.Mode())
	}
	field(h, strconv.FormatUint(uint64(mode), 8))
	if keepOwner {
		if st, ok := en.fi.Sys().(*syscall.Stat_t); ok {
			field(h, fmt.Sprintf("%d:%d", st.Uid, st.Gid))
		}
	}
	field(h, en.link)
	if en.fi.Mode().IsRegular() {
		field(h, strconv.FormatInt(en.fi.Size(), 10))
	}
	field(h, string(en.sum))
	return digest.NewDigest(digest.SHA256, h)
}

func TestEntryFramingUnchanged(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o4755)
	os.Mkdir(filepath.Join(dir, "d"), 0o700)
	os.Symlink("f", filepath.Join(dir, "l"))
	var f entryFramer
	for _, n := range []string{"f", "d", "l"} {
		fi, err := os.Lstat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		for _, portable := range []bool{false, true} {
			for _, owner := range []bool{false, true} {
				en := &hashEntry{name: "item\x00keep\x00" + n, fi: fi, rel: n, link: "f", sum: digest.FromString(n)}
				if got, want := f.digest(en, portable, owner), referenceDigest(en, portable, owner); got != want {
					t.Errorf("%s portable=%v owner=%v: %s, was %s", n, portable, owner, got, want)
				}
			}
		}
	}
}
