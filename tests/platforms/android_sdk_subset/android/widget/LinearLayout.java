// Declarations only (bodies throw): the subset of the Android SDK (API 35) that android_demo calls,
// signatures as developer.android.com/reference documents them, so kotlinc rejects a misspelt call.
package android.widget;
import android.content.Context;
public class LinearLayout extends android.view.ViewGroup {
    public static final int HORIZONTAL = 0;
    public static final int VERTICAL = 1;
    public LinearLayout(Context context) { super(context); throw new RuntimeException("Stub!"); }
    public int getOrientation() { throw new RuntimeException("Stub!"); }
    public void setOrientation(int orientation) { throw new RuntimeException("Stub!"); }
}
