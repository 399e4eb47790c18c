package layer

import (
	"bytes"
	"slices"
	"strconv"
)

// ownerScan lists the uids and gids of a tar stream as it is written,
// reading only the header blocks (and PAX records, which may override
// them) and skipping payloads by their size: a second tar parser would cost
// as much as the rest of the tar-split.
type ownerScan struct {
	block      [512]byte
	fill       int
	skip       int64 // payload bytes (with padding) still to pass over
	pax        []byte
	paxLen     int64 // bytes of records in pax (the rest is padding); -1: not in a PAX header
	paxUID     int64
	paxGID     int64
	paxSize    int64
	uids, gids []uint32
	bad        bool
}

func newOwnerScan() *ownerScan { return &ownerScan{paxLen: -1, paxUID: -1, paxGID: -1, paxSize: -1} }

func (o *ownerScan) Write(p []byte) {
	for len(p) > 0 && !o.bad {
		if o.skip > 0 {
			n := int(min(o.skip, int64(len(p))))
			if o.paxLen >= 0 {
				o.pax = append(o.pax, p[:n]...)
			}
			o.skip -= int64(n)
			p = p[n:]
			if o.skip == 0 && o.paxLen >= 0 {
				o.readPax()
			}
			continue
		}
		n := copy(o.block[o.fill:], p)
		o.fill += n
		p = p[n:]
		if o.fill == 512 {
			o.fill = 0
			o.header()
		}
	}
}

func (o *ownerScan) header() {
	h := o.block[:]
	if h[0] == 0 {
		return // end-of-archive blocks
	}
	size, ok := octal(h[124:136])
	if !ok {
		o.bad = true
		return
	}
	padded := (size + 511) &^ 511
	switch h[156] {
	case 'x':
		o.pax, o.paxLen, o.skip = o.pax[:0], size, padded
		if padded == 0 {
			o.readPax()
		}
		return
	case 'g', 'L', 'K':
		o.skip = padded
		return
	}
	uid, ok1 := octal(h[108:116])
	gid, ok2 := octal(h[116:124])
	if !ok1 || !ok2 {
		o.bad = true
		return
	}
	if o.paxUID >= 0 {
		uid = o.paxUID
	}
	if o.paxGID >= 0 {
		gid = o.paxGID
	}
	if o.paxSize >= 0 {
		size = o.paxSize
	}
	o.paxUID, o.paxGID, o.paxSize = -1, -1, -1
	if !slices.Contains(o.uids, uint32(uid)) {
		o.uids = append(o.uids, uint32(uid))
	}
	if !slices.Contains(o.gids, uint32(gid)) {
		o.gids = append(o.gids, uint32(gid))
	}
	switch h[156] {
	case '1', '2', '3', '4', '5', '6':
		size = 0 // links, devices, directories and fifos carry no payload
	}
	o.skip = (size + 511) &^ 511
}

// readPax takes uid, gid and size from the records of a PAX header
// ("LEN key=value\n" each).
func (o *ownerScan) readPax() {
	recs := o.pax[:o.paxLen]
	o.paxLen = -1
	for len(recs) > 0 {
		sp := bytes.IndexByte(recs, ' ')
		if sp <= 0 {
			o.bad = true
			return
		}
		n, err := strconv.Atoi(string(recs[:sp]))
		if err != nil || n <= sp+1 || n > len(recs) {
			o.bad = true
			return
		}
		kv := recs[sp+1 : n-1]
		recs = recs[n:]
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if !ok {
			continue
		}
		x, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			continue
		}
		switch string(k) {
		case "uid":
			o.paxUID = x
		case "gid":
			o.paxGID = x
		case "size":
			o.paxSize = x
		}
	}
}

// octal parses a tar numeric field (octal text, or base-256 when the top
// bit is set).
func octal(b []byte) (int64, bool) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		var x int64
		for i, c := range b {
			if i == 0 {
				c &= 0x7f
			}
			x = x<<8 | int64(c)
		}
		return x, true
	}
	b = bytes.Trim(b, " \x00")
	if len(b) == 0 {
		return 0, true
	}
	x, err := strconv.ParseInt(string(b), 8, 64)
	return x, err == nil
}

// owners returns the sorted ids seen; ok is false if the stream was not a
// tar this scanner understands.
func (o *ownerScan) owners() (uids, gids []uint32, ok bool) {
	if o.bad {
		return nil, nil, false
	}
	u, g := slices.Clone(o.uids), slices.Clone(o.gids)
	slices.Sort(u)
	slices.Sort(g)
	return u, g, true
}
