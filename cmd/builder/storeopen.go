package main

import (
	"fmt"

	"github.com/builder-dev/builder/internal/store"
	"go.podman.io/storage"
)

// openStore opens the containers/storage store selected by the global
// flags (defaults from storage.conf). The caller must Shutdown(false) it.
func (g *globalOptions) openStore() (storage.Store, error) {
	s, err := store.Open(store.Options{
		Root:       g.root,
		RunRoot:    g.runroot,
		Driver:     g.storageDriver,
		DriverOpts: g.storageOpts,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// withStore opens the store, runs fn with it and shuts the store down,
// reporting a shutdown failure only when fn succeeded.
func (g *globalOptions) withStore(fn func(storage.Store) error) (err error) {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer func() {
		if _, serr := s.Shutdown(false); serr != nil && err == nil {
			err = fmt.Errorf("shutting down storage: %w", serr)
		}
	}()
	return fn(s)
}
