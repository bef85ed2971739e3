// Bilinear resize used when a manifest's preprocessing.resize is "bilinear".
#ifndef TFAD_CC_IMAGE_RESIZE_H_
#define TFAD_CC_IMAGE_RESIZE_H_

#include <cstdint>

namespace tfad {

// Resizes an interleaved uint8 image (src_h x src_w x channels) into dst (dst_h x dst_w x channels).
// Half-pixel centres (the convention of OpenCV INTER_LINEAR and tf.image.resize(antialias=False)):
// source coordinate = (dst + 0.5) * src/dst - 0.5, clamped to the image; no antialiasing when shrinking;
// each output is rounded to the nearest integer (halves up). tfad/serving/images.py implements the same
// formula so both servers feed the model identical pixels.
void ResizeBilinear(const uint8_t* src, int src_h, int src_w, int channels, uint8_t* dst, int dst_h, int dst_w);

}  // namespace tfad

#endif  // TFAD_CC_IMAGE_RESIZE_H_
