// MiniCPM-V 4.5 video frames' temporal ids, as edgevlm.preprocess.video computes them with numpy.
#include <algorithm>
#include <cmath>

#include "edgevlm/preprocess.h"

namespace edgevlm {

std::vector<int32_t> temporal_ids_from_timestamps(const std::vector<double>& seconds, double scale, double duration) {
    if (seconds.empty()) return {};
    if (!(scale > 0)) throw PreprocessError("the temporal scale must be a positive number of seconds");
    for (double t : seconds)
        if (!std::isfinite(t) || t < 0)
            throw PreprocessError("video frame timestamps must be finite and non-negative seconds: pass each "
                                  "frame's time from the start of the video");
    const double stop = duration < 0 ? *std::max_element(seconds.begin(), seconds.end()) + scale : duration;
    // np.arange(0, stop, scale): ceil(stop / scale) points i * scale; one point 0 when empty
    const auto count = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(stop / scale)));
    const auto point = [&](int64_t i) { return static_cast<double>(i) * scale; };
    std::vector<int32_t> ids;
    for (double t : seconds) {
        int64_t upper = 0;  // np.searchsorted (left): the first point >= t
        while (upper < count && point(upper) < t) ++upper;
        upper = std::min(upper, count - 1);
        const int64_t lower = std::max<int64_t>(upper - 1, 0);
        const int64_t nearest = std::abs(t - point(lower)) <= std::abs(point(upper) - t) ? lower : upper;
        ids.push_back(static_cast<int32_t>(point(nearest) / scale));  // astype(int32): truncation
    }
    return ids;
}

std::vector<std::vector<int32_t>> group_frames(const std::vector<int32_t>& ids, int group_size) {
    if (group_size < 1) throw PreprocessError("frames per group is " + std::to_string(group_size) + ": use 1 to 6");
    std::vector<std::vector<int32_t>> groups;
    for (size_t i = 0; i < ids.size(); i += group_size)
        groups.emplace_back(ids.begin() + i, ids.begin() + std::min(ids.size(), i + group_size));
    return groups;
}

}  // namespace edgevlm
