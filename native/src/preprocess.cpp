// Frame -> engine input (runtime/preprocess.py): colour order, resize (OpenCV's area
// filter when shrinking, bilinear when growing; nearest without OpenCV, as the Python
// fallback), then (pixel * scale - mean) / std in float32, channels first.
#include <vector>

#ifdef EDGEMTL_WITH_OPENCV
#include <opencv2/imgproc.hpp>
#endif

#include "edgemtl/runtime.hpp"

namespace edgemtl {

namespace {

std::vector<uint8_t> resized(const uint8_t* hwc, int height, int width, int h, int w) {
  std::vector<uint8_t> out(static_cast<size_t>(h) * static_cast<size_t>(w) * 3);
#ifdef EDGEMTL_WITH_OPENCV
  const cv::Mat src(height, width, CV_8UC3, const_cast<uint8_t*>(hwc));
  cv::Mat dst(h, w, CV_8UC3, out.data());
  const bool shrink = height > h || width > w;
  cv::resize(src, dst, cv::Size(w, h), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
#else
  for (int y = 0; y < h; ++y) {
    const long sy = static_cast<long>(y) * height / h;
    for (int x = 0; x < w; ++x) {
      const long sx = static_cast<long>(x) * width / w;
      std::copy_n(hwc + (sy * width + sx) * 3, 3, out.data() + (static_cast<long>(y) * w + x) * 3);
    }
  }
#endif
  return out;
}

}  // namespace

void preprocess(const uint8_t* hwc, int height, int width, const std::string& colour_order, const InputSpec& spec,
                float* out) {
  const int c = spec.shape[0], h = spec.shape[1], w = spec.shape[2];
  if (c != 3) throw Error("frames are HxWx3; this bundle's input has " + std::to_string(c) + " channels");
  if (height <= 0 || width <= 0) throw Error("frame must be a non-empty HxWx3 array");
  std::string order = colour_order;
  for (auto& ch : order) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (order != "RGB" && order != "BGR") throw Error("colour order must be RGB or BGR, found '" + colour_order + "'");
  std::vector<uint8_t> frame;
  const uint8_t* src = hwc;
  if (height != h || width != w) {
    frame = resized(hwc, height, width, h, w);
    src = frame.data();
  }
  const bool flip = order != spec.colour_order;
  const float scale = static_cast<float>(spec.scale);
  const size_t plane = static_cast<size_t>(h) * static_cast<size_t>(w);
  for (int k = 0; k < 3; ++k) {
    const int from = flip ? 2 - k : k;
    const float mean = static_cast<float>(spec.mean[static_cast<size_t>(k)]);
    const float std = static_cast<float>(spec.std[static_cast<size_t>(k)]);
    for (size_t i = 0; i < plane; ++i) out[static_cast<size_t>(k) * plane + i] = (static_cast<float>(src[i * 3 + static_cast<size_t>(from)]) * scale - mean) / std;
  }
}

}  // namespace edgemtl
