// Command helper is the sandbox's processes without the rest of builder
// (see executor/sandbox/helper.go): make build compiles it and appends it
// to builder's binary.
package main

import "github.com/builder-dev/builder/executor/sandbox"

func main() { sandbox.HelperMain() }
