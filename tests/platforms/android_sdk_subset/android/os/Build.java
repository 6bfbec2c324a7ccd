// Declarations only (bodies throw): the subset of the Android SDK (API 35) that android_demo calls,
// signatures as developer.android.com/reference documents them, so kotlinc rejects a misspelt call.
package android.os;
public class Build {
    public static final String MANUFACTURER = null;
    public static final String MODEL = null;
    public static final String SOC_MODEL = null;  // added in API 31
    public static class VERSION {
        public static final String RELEASE = null;
        public static final int SDK_INT = 0;
    }
}
