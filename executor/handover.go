package executor

import (
	"sync"

	"github.com/builder-dev/builder/image"
)

// handover tells Config.ImageLayers of the built image's layers known so
// far at quiet moments: when every stage running is inside a RUN's process,
// nothing of this executor looks layer paths up (a tree moving into the
// store holds such lookups up), and a RUN takes a while. A build with no
// such moment hands nothing over; its store commit does all of it.
type handover struct {
	mu     sync.Mutex
	tell   func([]image.Layer)
	active int           // stages running
	inRun  int           // of them, inside a RUN's process
	layers []image.Layer // the longest prefix of the image's layers known
	told   int           // how many of them were told
}

// known records layers, the image's first ones, bottom first.
func (h *handover) known(layers []image.Layer) {
	if h == nil {
		return
	}
	h.mu.Lock()
	if len(layers) > len(h.layers) {
		h.layers = layers
	}
	h.mu.Unlock()
}

// stage counts a stage starting (+1) or ending (-1).
func (h *handover) stage(delta int) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.active += delta
	h.mu.Unlock()
}

// run counts a RUN's process starting (+1) or ending (-1), and tells of
// the layers not told yet when every stage running is in one.
func (h *handover) run(delta int) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.inRun += delta
	var tell []image.Layer
	if delta > 0 && h.inRun == h.active && len(h.layers) > h.told {
		tell, h.told = h.layers, len(h.layers)
	}
	h.mu.Unlock()
	if tell != nil {
		h.tell(tell)
	}
}
