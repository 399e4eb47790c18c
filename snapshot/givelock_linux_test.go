package snapshot

import (
	"testing"
	"time"
)

// waitState polls l's counters until cond holds (the goroutines under test
// have reached their wait), failing after a generous bound.
func waitState(t *testing.T, l *giveLock, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		l.mu.Lock()
		ok := cond()
		l.mu.Unlock()
		if ok {
			return
		}
	}
	t.Fatal("the lock never reached the expected state")
}

// A give waits for the uses of layer paths running, new uses do not wait
// for a give that waits (they are a build's critical path), and uses wait
// while a tree moves.
func TestGiveLock(t *testing.T) {
	var l giveLock
	endUse := l.use()
	gave := make(chan func())
	go func() { gave <- l.give() }()
	waitState(t, &l, func() bool { return l.waitingGives == 1 })

	l.use()() // not held up by the waiting give
	select {
	case <-gave:
		t.Fatal("the give did not wait for the use")
	default:
	}
	endUse()
	endGive := <-gave

	used := make(chan func())
	go func() { used <- l.use() }()
	waitState(t, &l, func() bool { return l.waitingUses == 1 })
	select {
	case <-used:
		t.Fatal("a use ran while a tree was being given")
	default:
	}
	endGive()
	(<-used)()
	endGive() // idempotent
	l.give()()
}
