package countio

import (
	"io"
	"strings"
	"testing"
)

func TestReaderCounts(t *testing.T) {
	for _, s := range []string{"", "a", strings.Repeat("x", 100000)} {
		r := &Reader{R: strings.NewReader(s)}
		if _, err := io.Copy(io.Discard, r); err != nil || r.N != int64(len(s)) {
			t.Errorf("counted %d of %d bytes (err %v)", r.N, len(s), err)
		}
	}
}
