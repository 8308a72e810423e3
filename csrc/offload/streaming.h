// The one call streamable blocks make (see sequential_offload.h), in a header light enough for
// every model file.
#pragma once

namespace nd {

// Called by every streamable block's forward on entry with its own address; a no-op unless this
// thread runs a pipeline with sequential offloading.
void stream_in(const void* unit);
// Whether this thread's blocks are streaming now (CUDA graphs are skipped then: weights move).
bool streaming_active();

}  // namespace nd
