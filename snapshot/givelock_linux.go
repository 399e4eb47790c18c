package snapshot

import "sync"

// giveLock keeps a tree from being given away (GiveTree) while this
// process uses layer paths it looked up: between a lookup and the mount
// that names the path, and while a Diff looks entries up in the lower
// layers. The tree moves, and its path is missing until a link replaces
// it; a mount would fail, a Diff would see a lower entry as unknown. Uses
// do not wait for a give that waits for them (gives run in the background,
// uses are on a build's critical path); a give waits until none is running.
type giveLock struct {
	mu      sync.Mutex
	cond    *sync.Cond
	users   int
	giving  bool
	initOne sync.Once
	// waiting counts the uses and gives waiting (for tests).
	waitingUses, waitingGives int
}

func (l *giveLock) init() { l.initOne.Do(func() { l.cond = sync.NewCond(&l.mu) }) }

// use marks a use of layer paths; the returned func ends it.
func (l *giveLock) use() func() {
	l.init()
	l.mu.Lock()
	for l.giving {
		l.waitingUses++
		l.cond.Wait()
		l.waitingUses--
	}
	l.users++
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if l.users--; l.users == 0 {
				l.cond.Broadcast()
			}
			l.mu.Unlock()
		})
	}
}

// give waits until no use runs and keeps new ones waiting until the
// returned func is called.
func (l *giveLock) give() func() {
	l.init()
	l.mu.Lock()
	for l.giving || l.users > 0 {
		l.waitingGives++
		l.cond.Wait()
		l.waitingGives--
	}
	l.giving = true
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.giving = false
			l.cond.Broadcast()
			l.mu.Unlock()
		})
	}
}
