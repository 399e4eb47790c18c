package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/builder-dev/builder/platform"
	digest "github.com/opencontainers/go-digest"
)

// keyVersion is mixed into every key; bump it when what a key covers changes.
const keyVersion = "builder-cache-v1"

// Key is a step's cache key. The zero Key means "not cacheable".
type Key struct{ d digest.Digest }

// Input is one named part of a key's preimage: a build arg, a source file
// set, a stage result. Names are kept beside the key so a miss can say
// which input differed from the nearest cached entry.
type Input struct {
	Name   string        `json:"name"`
	Digest digest.Digest `json:"digest"`
}

// Root is the key of FROM: the base manifest digest and the platform (a
// moved tag gives another digest, so another key).
func Root(base digest.Digest, p platform.Platform) Key {
	h := framed("root")
	lp(h, []byte(base))
	lp(h, []byte(p.String()))
	return Key{digest.NewDigest(digest.SHA256, h)}
}

// Next derives a step key from its parent: def is the canonical text of the
// expanded step (no positions), inputs the digests of what it reads.
func (k Key) Next(def []byte, inputs ...Input) Key {
	if k.IsZero() {
		return Key{}
	}
	h := framed("step")
	lp(h, []byte(k.d))
	lp(h, def)
	var n [binary.MaxVarintLen64]byte
	lp(h, n[:binary.PutUvarint(n[:], uint64(len(inputs)))])
	for _, in := range inputs {
		lp(h, []byte(in.Name))
		lp(h, []byte(in.Digest))
	}
	return Key{digest.NewDigest(digest.SHA256, h)}
}

// ParseKey reads a key from its hex form (as printed and stored).
func ParseKey(hex string) (Key, error) {
	d := digest.NewDigestFromEncoded(digest.SHA256, hex)
	if err := d.Validate(); err != nil {
		return Key{}, fmt.Errorf("cache key %q: %w", hex, err)
	}
	return Key{d}, nil
}

func (k Key) IsZero() bool          { return k.d == "" }
func (k Key) Digest() digest.Digest { return k.d }
func (k Key) Hex() string           { return k.d.Encoded() }
func (k Key) String() string        { return k.d.Encoded() }

// Short is the first 12 hex digits, as "Using cache" prints it.
func (k Key) Short() string {
	if k.IsZero() {
		return ""
	}
	return k.d.Encoded()[:12]
}

// framed starts a hash with the version and a domain tag.
func framed(domain string) hash.Hash {
	h := sha256.New()
	h.Write([]byte(keyVersion + "\x00" + domain + "\x00"))
	return h
}

// lp writes b length-prefixed, so no two input lists share a preimage.
func lp(h hash.Hash, b []byte) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
	h.Write(b)
}

// DigestOf hashes parts length-prefixed under a domain tag: the digest of
// an Input made of several values (e.g. the build args a step uses).
func DigestOf(domain string, parts ...[]byte) digest.Digest {
	h := framed(domain)
	for _, p := range parts {
		lp(h, p)
	}
	return digest.NewDigest(digest.SHA256, h)
}
