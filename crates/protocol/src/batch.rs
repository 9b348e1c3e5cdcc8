//! Record batch (magic v2) headers: parsing, validation and in-place patching.
