package store

import (
	"slices"
	"testing"

	"go.podman.io/storage"
)

func TestStoreOptions(t *testing.T) {
	def, err := storage.DefaultStoreOptions()
	if err != nil {
		t.Fatal(err)
	}
	// With no driver configured, a store's existing driver is taken.
	adopted := def.GraphDriverName
	if adopted == "" {
		adopted = ExistingDriver(def.GraphRoot)
	}
	// An overlay store is opened without the home's bind mount.
	home := func(driver string, opts []string) []string {
		if driver == "overlay" {
			return append(slices.Clone(opts), "overlay.skip_mount_home=true")
		}
		return opts
	}
	tests := []struct {
		name    string
		o       Options
		driver  string
		opts    []string
		root    string
		runRoot string
	}{
		{name: "defaults", o: Options{}, driver: adopted, opts: home(adopted, def.GraphDriverOptions), root: def.GraphRoot, runRoot: def.RunRoot},
		{name: "paths", o: Options{Root: "/r", RunRoot: "/rr"}, driver: def.GraphDriverName, opts: home(def.GraphDriverName, def.GraphDriverOptions), root: "/r", runRoot: "/rr"},
		{name: "other-driver-drops-conf-opts", o: Options{Driver: "vfs-other"}, driver: "vfs-other", opts: nil, root: def.GraphRoot, runRoot: def.RunRoot},
		{name: "opts-replace", o: Options{Driver: "overlay", DriverOpts: []string{"overlay.mountopt=nodev"}}, driver: "overlay", opts: []string{"overlay.mountopt=nodev", "overlay.skip_mount_home=true"}, root: def.GraphRoot, runRoot: def.RunRoot},
		{name: "home-option-kept", o: Options{Driver: "overlay", DriverOpts: []string{"overlay.skip_mount_home=false"}}, driver: "overlay", opts: []string{"overlay.skip_mount_home=false"}, root: def.GraphRoot, runRoot: def.RunRoot},
		{name: "opts-clear", o: Options{DriverOpts: []string{""}}, driver: adopted, opts: home(adopted, nil), root: def.GraphRoot, runRoot: def.RunRoot},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := storeOptions(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if got.GraphDriverName != tc.driver || !slices.Equal(got.GraphDriverOptions, tc.opts) || got.GraphRoot != tc.root || got.RunRoot != tc.runRoot {
				t.Errorf("got driver %q opts %q root %q runroot %q", got.GraphDriverName, got.GraphDriverOptions, got.GraphRoot, got.RunRoot)
			}
		})
	}
	again, _ := storage.DefaultStoreOptions()
	if !slices.Equal(again.GraphDriverOptions, def.GraphDriverOptions) {
		t.Error("storeOptions modified the cached default options")
	}
}
