// Package partition expands map iterdata that names object storage into
// one task input per object or per chunk, and reads a task's chunk.
//
// # Expansion
//
// An iterdata element names storage when it is a string with a storage
// scheme (cos://, s3://, local://, http://, https://) or an object holding
// such a string under "obj" (its other keys become keyword arguments). A
// bucket or a prefix ending in '/' expands to every object under it; any
// other URL is one object. With Options.ChunkSize each object is cut into
// ranges of that many bytes, with Options.ChunkN into that many ranges;
// setting both is an error. Items come in iterdata order, then key order,
// then part order; Object.Group numbers the input objects of the job.
//
// # Chunks
//
// A chunk's nominal byte range [Start, End) is not aligned: OpenChunk
// aligns it while reading. A chunk reads the lines that start inside its
// range, each to its end, however far past End that is:
//
//	object:  the quick\nbrown fox jumps over\ndog\n
//	chunk_size 8 gives [0,8) [8,16) [16,24) [24,32) [32,35):
//	part 0 [0,8)    "the quick\n"              the line starting at 0
//	part 1 [8,16)   "brown fox jumps over\n"   starts at 10, read on past 16
//	part 2 [16,24)  ""                         no line starts here
//	part 3 [24,32)  "dog\n"                    starts at 31
//	part 4 [32,35)  ""
//
// So every line is read by exactly one chunk, and the concatenation of all
// chunks is the object.
package partition
