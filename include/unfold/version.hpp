#pragma once

/// \file
/// The library version, defined once; CMake reads it from here.

#define UNFOLD_VERSION_MAJOR 0
#define UNFOLD_VERSION_MINOR 1
#define UNFOLD_VERSION_PATCH 0
#define UNFOLD_VERSION_STRING "0.1.0"
