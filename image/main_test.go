package image_test

import (
	"testing"

	"github.com/builder-dev/builder/internal/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }
