// The browser entry: the same op set; @tl/tensor resolves to its browser entry here.
export * from './index.js';
